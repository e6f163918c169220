//! Bad input: experiment files, results files and experiment flags.
