//! Schedule-exploring tests of the committer (decision 0009).
