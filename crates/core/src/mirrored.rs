//! A mutex with one number of what it guards (the aggregate's rows, the open script blocks)
//! mirrored in an atomic as each holder lets go, so metrics read it without the lock.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

pub struct Mirrored<T> {
    inner: Mutex<T>,
    value: AtomicUsize,
    measure: fn(&T) -> usize,
}

impl<T> Mirrored<T> {
    pub fn new(t: T, measure: fn(&T) -> usize) -> Self {
        Mirrored {
            value: AtomicUsize::new(measure(&t)),
            inner: Mutex::new(t),
            measure,
        }
    }

    /// The guarded value. A panic while it was held cannot leave it in a state that matters
    /// more than losing it: keep going.
    pub fn lock(&self) -> MirroredGuard<'_, T> {
        MirroredGuard {
            guard: self.inner.lock().unwrap_or_else(|p| p.into_inner()),
            value: &self.value,
            measure: self.measure,
        }
    }

    /// The number as the last holder left it.
    pub fn get(&self) -> usize {
        self.value.load(Ordering::Relaxed)
    }
}

pub struct MirroredGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    value: &'a AtomicUsize,
    measure: fn(&T) -> usize,
}

impl<T> Deref for MirroredGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for MirroredGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for MirroredGuard<'_, T> {
    fn drop(&mut self) {
        self.value
            .store((self.measure)(&self.guard), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_follows_each_holder_as_it_lets_go() {
        let m = Mirrored::new(vec![1, 2], Vec::len);
        assert_eq!(m.get(), 2);
        {
            let mut g = m.lock();
            g.push(3);
            assert_eq!(m.get(), 2, "not before the holder lets go");
        }
        assert_eq!(m.get(), 3);
        m.lock().clear();
        assert_eq!(m.get(), 0);
    }
}
