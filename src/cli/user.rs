//! `myelin user create | list | deactivate | reset-password | set-admin`: operator
//! account commands on the same databases the server uses (no HTTP, no UIA,
//! no rate limits; registration may be disabled). Passwords are read from
//! `--password` or, when absent, from the `MYELIN_PASSWORD` environment
//! variable, so they need not appear in the process list.

use std::sync::Arc;

use clap::{Args, Subcommand};

use super::{CliError, ConfigArgs, print, serve::runtime};
use crate::app::AppConfig;
use crate::service::{Accounts, SystemClock, accounts::validate_localpart};

/// Operator account commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Create {
        /// The localpart (`alice` for `@alice:<server_name>`).
        localpart: String,
        /// The password (default: `$MYELIN_PASSWORD`; none: cannot log in).
        #[command(flatten)]
        password: PasswordArg,
        /// Make the account an admin (server-authoritative game calls).
        #[arg(long)]
        admin: bool,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Set or clear an account's admin flag.
    SetAdmin {
        /// A localpart or full user ID.
        user: String,
        /// `true` or `false`.
        #[arg(action = clap::ArgAction::Set)]
        admin: bool,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List every account, with its state.
    List {
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Deactivate an account: logs out every device and removes its password.
    Deactivate {
        /// A localpart or full user ID.
        user: String,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Set a new password and log out every device.
    ResetPassword {
        /// A localpart or full user ID.
        user: String,
        /// The new password (default: `$MYELIN_PASSWORD`).
        #[command(flatten)]
        password: PasswordArg,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `--password`, falling back to `MYELIN_PASSWORD`.
#[derive(Clone, Debug, Args)]
pub struct PasswordArg {
    /// The password.
    #[arg(long, env = "MYELIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// Runs a `myelin user` command.
pub async fn run(cmd: UserCommand) -> Result<(), CliError> {
    match cmd {
        UserCommand::Create {
            localpart,
            password,
            admin,
            config,
        } => {
            validate_localpart(&localpart).map_err(|e| CliError::BadInput(e.to_owned()))?;
            let accounts = open(&config).await?;
            let user_id = accounts
                .create_user(&localpart, password.password)
                .await
                .map_err(service_error)?;
            // A second transaction: if it fails, `set-admin` completes it.
            if admin {
                accounts
                    .set_admin(user_id.as_str(), true)
                    .await
                    .map_err(service_error)?;
                return print(&format!("created {user_id} (admin)\n"));
            }
            print(&format!("created {user_id}\n"))
        }
        UserCommand::SetAdmin {
            user,
            admin,
            config,
        } => {
            let accounts = open(&config).await?;
            let user_id = accounts
                .set_admin(&user, admin)
                .await
                .map_err(service_error)?;
            print(&format!("{user_id} admin={admin}\n"))
        }
        UserCommand::List { config } => {
            let accounts = open(&config).await?;
            let users = accounts.list_users().await.map_err(runtime)?;
            let mut out = String::new();
            for (user_id, record) in users {
                let state = if record.deactivated {
                    "deactivated"
                } else {
                    "active"
                };
                let admin = if record.admin { " admin" } else { "" };
                out.push_str(&format!(
                    "{user_id}\t{state}{admin}\tcreated_ms={}\n",
                    record.created_ms
                ));
            }
            print(&out)
        }
        UserCommand::Deactivate { user, config } => {
            let accounts = open(&config).await?;
            let user_id = accounts
                .deactivate_user(&user)
                .await
                .map_err(service_error)?;
            print(&format!("deactivated {user_id}\n"))
        }
        UserCommand::ResetPassword {
            user,
            password,
            config,
        } => {
            let password = password.password.ok_or_else(|| {
                CliError::BadInput("a password is required (--password or MYELIN_PASSWORD)".into())
            })?;
            let accounts = open(&config).await?;
            let user_id = accounts
                .reset_password(&user, password)
                .await
                .map_err(service_error)?;
            print(&format!(
                "reset the password of {user_id}; every device is logged out\n"
            ))
        }
    }
}

/// The accounts service over the configured databases.
async fn open(args: &ConfigArgs) -> Result<Accounts, CliError> {
    let config = args.load()?;
    // The settings the server reads; only the accounts service is built (no
    // notifier, no signing key: an account command needs neither).
    let settings = AppConfig::from_config(&config)?;
    let databases = crate::db::open(&config.databases).await?;
    let db = crate::db::accounts::AccountsDb::new(&databases.accounts);
    Ok(Accounts::new(
        db,
        crate::service::e2ee::DeviceLifecycle::new(&databases),
        settings.server_name,
        settings.server,
        Arc::new(SystemClock),
    ))
}

/// User mistakes (taken, invalid, unknown) are bad input; the rest run-time.
fn service_error(e: crate::service::Error) -> CliError {
    use crate::service::Error as S;
    match e {
        S::UserInUse | S::InvalidUsername(_) | S::InvalidParam(_) | S::NotFound(_) => {
            CliError::BadInput(e.to_string())
        }
        other => runtime(other),
    }
}
