//! resctrl schemata lines and L3 masks: no panic; a parsed line formats to one that parses
//! back the same; `check_mask` accepts exactly the non-zero contiguous masks inside
//! `cbm_mask` with at least `min_bits` bits.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use owca::resctrl::schemata::{Resource, check_mask, find_line, format, parse};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    mb: bool,
    mask: u64,
    cbm_mask: u64,
    min_bits: u32,
    /// Last, so that it takes the rest of the input: seeds are a 21-byte head and a line.
    line: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let resource = if input.mb { Resource::Mb } else { Resource::L3 };
    if let Ok(values) = parse(resource, input.line) {
        let line = format(resource, &values);
        assert_eq!(parse(resource, &line).as_ref(), Ok(&values), "{line}");
        assert_eq!(find_line(&line, resource), Some(line.as_str()));
    }
    let _ = find_line(input.line, resource);

    let (mask, cbm_mask, min_bits) = (input.mask, input.cbm_mask, input.min_bits);
    let ones = mask.count_ones();
    let contiguous = mask != 0 && ones == 64 - mask.leading_zeros() - mask.trailing_zeros();
    let acceptable = contiguous && mask & !cbm_mask == 0 && ones >= min_bits;
    assert_eq!(
        check_mask(mask, cbm_mask, min_bits).is_none(),
        acceptable,
        "mask {mask:#x}, cbm_mask {cbm_mask:#x}, min_bits {min_bits}"
    );
});
