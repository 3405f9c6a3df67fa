//! Child processes of a test, killed and reaped when the test ends, whichever way.

use std::process::{Child, Command, Stdio};

/// A child process killed and reaped on drop.
pub struct Proc(pub Child);

impl Proc {
    /// Spawns `cmd` (stdin from /dev/null unless the caller set it).
    pub fn spawn(cmd: &mut Command) -> Self {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
        Self(child)
    }

    /// Runs `script` with `sh -c`, pinned to `cpu` when given; stdout to /dev/null.
    pub fn sh(script: &str, cpu: Option<u32>) -> Self {
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "sh", "-c", script]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", script]);
                c
            }
        };
        Self::spawn(cmd.stdin(Stdio::null()).stdout(Stdio::null()))
    }

    /// Runs a Python program.
    pub fn python(code: &str) -> Self {
        Self::spawn(
            Command::new("python3")
                .args(["-c", code])
                .stdin(Stdio::null()),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it still runs (a zombie counts as exited).
    pub fn alive(&mut self) -> bool {
        self.0.try_wait().expect("checking a child").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
