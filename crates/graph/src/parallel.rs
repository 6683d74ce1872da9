//! Splitting a slice's work over threads, with the results in the slice's order.

/// How many threads `len` items are split over: at most `jobs`, and no thread with fewer than
/// `min_per_thread` items (below that, starting a thread costs more than it saves).
pub(crate) fn threads_for(len: usize, jobs: usize, min_per_thread: usize) -> usize {
    jobs.min(len / min_per_thread.max(1)).max(1)
}

/// `f` of each of `threads` consecutive chunks of `items`, each chunk on a thread of its own
/// (all of them on this thread if `threads` is 1), the results in the chunks' order. A panic
/// in `f` is passed on.
pub(crate) fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() <= 1 {
        return vec![f(items)];
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|chunk| scope.spawn(move || f(chunk)))
            .collect();
        handles.into_iter().map(join).collect()
    })
}

/// Joins a scoped thread, passing a panic on to the caller.
pub(crate) fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_back_in_order_whatever_the_threads() {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [1, 2, 3, 7, 1000, 5000] {
            let sums: Vec<Vec<u32>> = map_chunks(&items, threads, |chunk| chunk.to_vec());
            assert_eq!(sums.concat(), items, "{threads} threads");
            assert!(sums.len() <= threads.max(1));
        }
        assert_eq!(map_chunks(&[] as &[u32], 4, <[u32]>::len), [0]);
        assert_eq!(threads_for(1000, 2, 512), 1);
        assert_eq!(threads_for(8000, 2, 512), 2);
        assert_eq!(threads_for(8000, 64, 512), 15);
    }

    #[test]
    #[should_panic(expected = "chunk panicked")]
    fn a_panic_is_passed_on() {
        let items = [1, 2, 3, 4];
        map_chunks(&items, 2, |chunk| {
            assert!(!chunk.contains(&4), "chunk panicked");
        });
    }
}
