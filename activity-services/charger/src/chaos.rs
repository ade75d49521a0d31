//! Failures on purpose, for demos and tests of retries and timeouts: `--fail-rate` and
//! `--hang-rate`.

/// The charger's misbehaviour flags. Both default to 0: a well-behaved charger.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Fraction (0 to 1) of attempts that fail with a transient, retryable error
    /// (`SimulatedOutage`) before charging anything, so the orchestrator retries them. For
    /// demos.
    #[arg(
        long,
        env = "CHARGER_FAIL_RATE",
        default_value_t = 0.0,
        value_name = "0..1",
        value_parser = parse_rate
    )]
    pub fail_rate: f64,

    /// Fraction (0 to 1) of attempts that never answer: the handler waits until the charger
    /// stops, so the orchestrator's start-to-close (or heartbeat) timeout must fire. For demos.
    /// At shutdown a hung attempt is reported as a transient failure.
    #[arg(
        long,
        env = "CHARGER_HANG_RATE",
        default_value_t = 0.0,
        value_name = "0..1",
        value_parser = parse_rate
    )]
    pub hang_rate: f64,
}

/// What to do with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mischief {
    /// Charge as usual.
    None,
    /// Fail transiently before charging.
    Fail,
    /// Never answer (until shutdown).
    Hang,
}

/// `--fail-rate` plus `--hang-rate` is more than 1.
#[derive(Debug, thiserror::Error)]
#[error(
    "--fail-rate ({fail_rate}) plus --hang-rate ({hang_rate}) is more than 1: lower one of them"
)]
pub struct RatesTooHigh {
    fail_rate: f64,
    hang_rate: f64,
}

impl ChaosArgs {
    /// Checks that the rates can be honoured together.
    pub fn validate(&self) -> Result<(), RatesTooHigh> {
        if self.fail_rate + self.hang_rate > 1.0 {
            return Err(RatesTooHigh {
                fail_rate: self.fail_rate,
                hang_rate: self.hang_rate,
            });
        }
        Ok(())
    }

    /// Whether to misbehave on an attempt that drew `roll` (uniform in `[0, 1)`): the first
    /// `hang_rate` of the range hangs, the next `fail_rate` fails, the rest charges.
    pub fn mischief(&self, roll: f64) -> Mischief {
        if roll < self.hang_rate {
            Mischief::Hang
        } else if roll < self.hang_rate + self.fail_rate {
            Mischief::Fail
        } else {
            Mischief::None
        }
    }

    /// [`ChaosArgs::mischief`] for a fresh random roll.
    pub fn draw(&self) -> Mischief {
        if self.fail_rate == 0.0 && self.hang_rate == 0.0 {
            return Mischief::None;
        }
        self.mischief(rand::random::<f64>())
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number: use a fraction from 0 to 1"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(fail_rate: f64, hang_rate: f64) -> ChaosArgs {
        ChaosArgs {
            fail_rate,
            hang_rate,
        }
    }

    #[test]
    fn rates_are_fractions() {
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert_eq!(parse_rate("1"), Ok(1.0));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("often").is_err());
    }

    #[test]
    fn the_roll_picks_hang_then_fail_then_charge() {
        let chaos = chaos(0.3, 0.2);
        assert_eq!(chaos.mischief(0.0), Mischief::Hang);
        assert_eq!(chaos.mischief(0.19), Mischief::Hang);
        assert_eq!(chaos.mischief(0.2), Mischief::Fail);
        assert_eq!(chaos.mischief(0.49), Mischief::Fail);
        assert_eq!(chaos.mischief(0.5), Mischief::None);
        assert_eq!(chaos.mischief(0.999), Mischief::None);
    }

    #[test]
    fn a_well_behaved_charger_never_misbehaves() {
        let chaos = chaos(0.0, 0.0);
        assert!((0..1_000).all(|_| chaos.draw() == Mischief::None));
        assert_eq!(chaos.mischief(0.0), Mischief::None);
    }

    #[test]
    fn a_rate_of_one_always_misbehaves() {
        assert!((0..1_000).all(|_| chaos(1.0, 0.0).draw() == Mischief::Fail));
        assert!((0..1_000).all(|_| chaos(0.0, 1.0).draw() == Mischief::Hang));
    }

    #[test]
    fn rates_that_add_up_to_more_than_one_are_refused() {
        assert!(chaos(0.5, 0.5).validate().is_ok());
        let error = chaos(0.7, 0.5).validate().unwrap_err();
        assert!(error.to_string().contains("--fail-rate"), "{error}");
    }
}
