//! `myelin game verify`: checks the `game` database's economy on the same
//! store the server uses (no HTTP): every balance equals the sum of its
//! user's ledger, and none is negative. Prints a summary and every
//! difference; exits 1 on any.

use clap::Subcommand;

use super::{CliError, ConfigArgs, print};
use crate::db::game::GameDb;

/// Game operator commands.
#[derive(Debug, Subcommand)]
pub enum GameCommand {
    /// Check that every balance equals the sum of its ledger (exit 1 if not).
    Verify {
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Runs a `myelin game` command.
pub async fn run(cmd: GameCommand) -> Result<(), CliError> {
    match cmd {
        GameCommand::Verify { config } => {
            let config = config.load()?;
            let databases = crate::db::open(&config.databases).await?;
            let game = GameDb::new(&databases.game);
            let report = game
                .verify()
                .await
                .map_err(|e| CliError::Runtime(Box::new(e)))?;
            let mut out = format!(
                "users {}\nbalances {}\nledger entries {}\n",
                report.users, report.balances, report.entries
            );
            for m in &report.mismatches {
                out.push_str(&format!(
                    "MISMATCH {} {}: balance {}, ledger sum {}\n",
                    m.user_id, m.currency, m.balance, m.ledger_sum
                ));
            }
            for (user, currency, balance) in &report.negative {
                out.push_str(&format!("NEGATIVE {user} {currency}: {balance}\n"));
            }
            print(&out)?;
            let bad = report.mismatches.len() + report.negative.len();
            if bad > 0 {
                return Err(CliError::Inconsistent(format!(
                    "{bad} balance(s) disagree with the ledger or are negative"
                )));
            }
            Ok(())
        }
    }
}
