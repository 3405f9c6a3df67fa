//! A kernel array map shared with the agent through a memory mapping (`BPF_F_MMAPABLE`):
//! the agent reads every watched cgroup's value without a system call, in bytes that do
//! not depend on the number of CPUs.

use std::{
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use aya::{Pod, maps::MapData};

/// The values of an array map of `T`, mapped into the agent's memory.
///
/// The kernel programs add to the values with atomic instructions while the agent reads
/// them, so every access goes through 8-byte atomic loads and stores (`T` is made of
/// `u64`s only): never a torn value, never a data race.
pub struct SharedArray<T> {
    ptr: NonNull<u8>,
    len: usize,
    entries: u32,
    // Keeps the map (and so the mapping's object) open as long as the mapping.
    _map: MapData,
    _values: PhantomData<T>,
}

// SAFETY: the mapping is plain shared memory accessed only through atomics.
unsafe impl<T> Send for SharedArray<T> {}
// SAFETY: as above: `&self` methods only load.
unsafe impl<T> Sync for SharedArray<T> {}

impl<T: Pod + Default> SharedArray<T> {
    const WORDS: usize = size_of::<T>() / 8;

    /// Maps array `map` of `entries` values.
    pub fn new(map: MapData, entries: u32) -> std::io::Result<Self> {
        const {
            assert!(size_of::<T>().is_multiple_of(8) && align_of::<T>() == 8);
        }
        let len = (size_of::<T>() * entries as usize).next_multiple_of(page_size());
        // SAFETY: a fresh shared mapping of the map's fd, of the length the kernel gives an
        // mmapable array of this many values (rounded to pages); checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(Self {
            ptr,
            len,
            entries,
            _map: map,
            _values: PhantomData,
        })
    }

    fn words(&self, index: u32) -> Option<*mut u64> {
        (index < self.entries).then(|| {
            // SAFETY: within the mapping: index < entries and the mapping holds them all.
            unsafe { self.ptr.as_ptr().add(index as usize * size_of::<T>()) }.cast()
        })
    }

    /// The value at `index` (`None` outside the array).
    pub fn get(&self, index: u32) -> Option<T> {
        let src = self.words(index)?;
        let mut out = T::default();
        let dst = std::ptr::from_mut(&mut out).cast::<u64>();
        for i in 0..Self::WORDS {
            // SAFETY: `src` is an aligned value of `WORDS` words in the mapping, written by
            // the kernel only atomically; `dst` an aligned `T` of as many words.
            unsafe { *dst.add(i) = AtomicU64::from_ptr(src.add(i)).load(Relaxed) };
        }
        Some(out)
    }

    /// Sets the value at `index` to zero, before it is given to a new cgroup.
    pub fn zero(&self, index: u32) {
        if let Some(p) = self.words(index) {
            for i in 0..Self::WORDS {
                // SAFETY: as in `get`.
                unsafe { AtomicU64::from_ptr(p.add(i)).store(0, Relaxed) };
            }
        }
    }
}

impl<T> Drop for SharedArray<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}
