//! A small scoped-thread map for probing many devices at once (probes wait on device I/O).

/// Threads that probe at once during an enumeration.
const PROBE_THREADS: usize = 8;

/// `f` over `items` on up to [`PROBE_THREADS`] scoped threads, results in order.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < 2 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(PROBE_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            items.chunks(chunk).map(|c| scope.spawn(|| c.iter().map(&f).collect::<Vec<R>>())).collect();
        workers
            .into_iter()
            // A panic in a worker is a bug; pass it on rather than return misaligned results.
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_the_order() {
        let items: Vec<u32> = (0..37).collect();
        assert_eq!(parallel_map(&items, |i| i * 2), items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(parallel_map(&Vec::<u32>::new(), |i| *i).is_empty());
    }
}
