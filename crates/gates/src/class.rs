//! Rollback classes and the verdict they add up to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a change does to a rollback. Ordered from mild to grave, so the
/// verdict is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A schema habit the seeds check for; no effect on the rollback.
    Hygiene,
    /// The rollback stays possible, but running the change (or rolling it
    /// back) can hurt, or only tolerant readers survive it.
    Risky,
    /// The previous release would break against the new schema or server:
    /// rolling the code back would not restore service.
    Unsafe,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Hygiene => "hygiene",
            Class::Risky => "risky",
            Class::Unsafe => "unsafe",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The worst class found, or `safe` when nothing was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Safe,
    Hygiene,
    Risky,
    Unsafe,
}

impl Verdict {
    /// The verdict of a set of findings' classes.
    pub fn of(classes: impl IntoIterator<Item = Class>) -> Verdict {
        classes
            .into_iter()
            .max()
            .map_or(Verdict::Safe, Verdict::from)
    }

    /// The command's exit status: 0 safe, 1 risky or hygiene, 2 unsafe.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Safe => 0,
            Verdict::Hygiene | Verdict::Risky => 1,
            Verdict::Unsafe => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Hygiene => "hygiene",
            Verdict::Risky => "risky",
            Verdict::Unsafe => "unsafe",
        }
    }
}

impl From<Class> for Verdict {
    fn from(c: Class) -> Verdict {
        match c {
            Class::Hygiene => Verdict::Hygiene,
            Class::Risky => Verdict::Risky,
            Class::Unsafe => Verdict::Unsafe,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_the_worst_class_and_safe_when_empty() {
        assert_eq!(Verdict::of([]), Verdict::Safe);
        assert_eq!(Verdict::of([Class::Hygiene, Class::Risky]), Verdict::Risky);
        assert_eq!(
            Verdict::of([Class::Unsafe, Class::Hygiene]),
            Verdict::Unsafe
        );
        assert_eq!(Verdict::Safe.exit_code(), 0);
        assert_eq!(Verdict::Hygiene.exit_code(), 1);
        assert_eq!(Verdict::Risky.exit_code(), 1);
        assert_eq!(Verdict::Unsafe.exit_code(), 2);
    }
}
