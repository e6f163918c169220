//! Bad input: strategy, scenario, rules and learner TOML files: every value checked, every error at file:line: field.
