//! The refresh job: receiver → guide files.
