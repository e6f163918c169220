//! Bad input: what the reports and management commands say about edge cases.
