//! Which nested token spans (function bodies, loop bodies) lie around a token: one sort
//! up front, then each question is a binary search and a climb up the enclosing spans, so a
//! script with a hundred thousand functions and as many calls stays linear.

/// Most enclosing spans climbed for one question (deeper nesting reads as "none").
const MAX_CLIMB: usize = 256;

/// Spans that nest or are disjoint (blocks always are), each tagged with an item.
pub struct Nest {
    /// Sorted by start, outer before inner.
    spans: Vec<Span>,
}

struct Span {
    from: usize,
    to: usize,
    /// The innermost span around this one.
    parent: Option<usize>,
    item: usize,
}

impl Nest {
    /// `spans`: (from, to, item), each `from < to`.
    pub fn new(mut spans: Vec<(usize, usize, usize)>) -> Nest {
        spans.sort_by_key(|&(from, to, _)| (from, std::cmp::Reverse(to)));
        let mut out: Vec<Span> = Vec::with_capacity(spans.len());
        let mut open: Vec<usize> = Vec::new();
        for (from, to, item) in spans {
            while let Some(&top) = open.last() {
                if to <= out[top].to && from < out[top].to {
                    break;
                }
                open.pop();
            }
            out.push(Span {
                from,
                to,
                parent: open.last().copied(),
                item,
            });
            open.push(out.len() - 1);
        }
        Nest { spans: out }
    }

    /// The items of the spans strictly around token `at` (`from < at < to`), innermost
    /// first.
    pub fn around(&self, at: usize) -> impl Iterator<Item = usize> + '_ {
        let last = self.spans.partition_point(|s| s.from < at);
        let mut cur = last.checked_sub(1);
        let mut climbed = 0;
        std::iter::from_fn(move || {
            while let Some(i) = cur {
                climbed += 1;
                if climbed > MAX_CLIMB {
                    cur = None;
                    break;
                }
                let s = &self.spans[i];
                cur = s.parent;
                if at < s.to {
                    return Some(s.item);
                }
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Nest;

    #[test]
    fn innermost_first_and_siblings_skipped() {
        // A [0,100] holds B [10,20] and C [30,40]; D [200,300] stands alone
        let n = Nest::new(vec![(30, 40, 2), (0, 100, 0), (200, 300, 3), (10, 20, 1)]);
        let around = |at| n.around(at).collect::<Vec<_>>();
        assert_eq!(around(15), [1, 0]);
        assert_eq!(around(35), [2, 0]);
        assert_eq!(around(50), [0]);
        assert_eq!(around(150), Vec::<usize>::new());
        assert_eq!(around(250), [3]);
        // the span's own ends are not inside it
        assert_eq!(around(10), [0]);
        assert_eq!(around(100), Vec::<usize>::new());
    }
}
