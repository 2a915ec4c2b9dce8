//! Giving memory's pages back to the system while it stays allocated.

/// Gives the whole pages inside `len` bytes at `data` back to the system
/// (`MADV_DONTNEED`): they stop counting as resident until written again, and
/// read as zeros. Best effort: a failure leaves the memory as it was.
///
/// # Safety
///
/// `data` must point to `len` bytes of one allocation that nothing reads as
/// meaningful afterwards (their contents are lost), and no other object may
/// share a page lying wholly inside them.
pub unsafe fn discard_pages(data: *mut u8, len: usize) {
    // SAFETY: sysconf has no preconditions.
    let page = match usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) {
        Ok(page) if page.is_power_of_two() => page,
        _ => return,
    };
    let start = data as usize;
    let Some(end) = start.checked_add(len) else {
        return;
    };
    let first = (start + page - 1) & !(page - 1);
    let last = end & !(page - 1);
    if last > first {
        // SAFETY: [first, last) holds whole pages inside the caller's bytes,
        // which the caller gives up (see the function's contract).
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_DONTNEED,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_pages(data: &[u8]) -> usize {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let start = data.as_ptr() as usize & !(page - 1);
        let end = data.as_ptr() as usize + data.len();
        let pages = (end - start).div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: [start, start + pages * page) covers `data`'s mapped pages
        // and `vec` has one byte per page.
        let rc =
            unsafe { libc::mincore(start as *mut libc::c_void, pages * page, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn whole_pages_inside_are_discarded_and_the_edges_kept() {
        let mut data = vec![7u8; 64 << 10];
        let resident = resident_pages(&data);
        assert!(resident >= 16, "{resident}");
        // Skip a byte at each end: the pages they lie on are not wholly inside.
        let len = data.len() - 2;
        // SAFETY: the bytes are ours, and nothing but these tests reads them.
        unsafe { discard_pages(data.as_mut_ptr().add(1), len) };
        assert!(resident_pages(&data) <= 2, "{}", resident_pages(&data));
        assert_eq!(data[0], 7);
        assert_eq!(data[data.len() - 1], 7);
        assert!(data[4096..data.len() - 4096].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_span_within_one_page_is_left_alone() {
        let mut data = vec![7u8; 100];
        // SAFETY: as above.
        unsafe { discard_pages(data.as_mut_ptr(), data.len()) };
        assert!(data.iter().all(|&b| b == 7));
    }
}
