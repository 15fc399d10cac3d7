//! Majority arithmetic, kept in one place so every caller agrees on it.

/// Votes needed for a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// Whether `reachable` voters out of `voters` form a quorum.
pub fn has_quorum(reachable: usize, voters: usize) -> bool {
    voters > 0 && reachable >= majority(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(5), 3);
        assert!(has_quorum(2, 3));
        assert!(!has_quorum(1, 3));
        assert!(!has_quorum(0, 0));
    }
}
