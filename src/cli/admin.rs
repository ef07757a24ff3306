//! `myelin admin ...`: the admin API's operations from the command line, on
//! the same databases the server uses (the server must be stopped for an
//! embedded store, which one process holds). Each command calls the
//! [`crate::service::admin`] function its endpoint calls and prints the
//! endpoint's JSON (`docs/admin-api.md`).

use std::sync::Arc;

use clap::Subcommand;
use serde_json::{Value, json};

use super::user::PasswordArg;
use super::{CliError, ConfigArgs, print, serve::runtime};
use crate::app::{App, AppConfig};
use crate::service::SystemClock;
use crate::service::admin::{self, NewToken, RoomsQuery, UsersQuery};

/// Admin commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Rooms.
    #[command(subcommand)]
    Rooms(RoomsCommand),
    /// Registration tokens.
    #[command(subcommand)]
    RegistrationTokens(TokensCommand),
}

/// `myelin admin users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// One page of accounts (`GET /_synapse/admin/v2/users`).
    List {
        /// Offset.
        #[arg(long)]
        from: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<String>,
        /// User ID or display name contains.
        #[arg(long)]
        name: Option<String>,
        /// Include deactivated accounts.
        #[arg(long)]
        deactivated: bool,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Deactivate an account (`POST /_synapse/admin/v1/deactivate`).
    Deactivate {
        /// The full user ID.
        user_id: String,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Set a password (`POST /_synapse/admin/v1/reset_password`).
    ResetPassword {
        /// The full user ID.
        user_id: String,
        /// The new password (default: `$MYELIN_PASSWORD`).
        #[command(flatten)]
        password: PasswordArg,
        /// Keep the account's devices logged in.
        #[arg(long)]
        keep_devices: bool,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `myelin admin rooms ...`.
#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// One page of rooms (`GET /_synapse/admin/v1/rooms`).
    List {
        /// Offset.
        #[arg(long)]
        from: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<String>,
        /// Sort key (`name`, `joined_members`, ...).
        #[arg(long)]
        order_by: Option<String>,
        /// Name, alias or room ID contains.
        #[arg(long)]
        search_term: Option<String>,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Shut a room down: members leave, aliases and directory entry go;
    /// with `--purge` every key of the room is removed too
    /// (`DELETE /_synapse/admin/v2/rooms/{room_id}`); prints its status.
    Delete(DeleteArgs),
}

/// `myelin admin rooms delete ROOM_ID [--block] [--purge]`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The room ID.
    pub room_id: String,
    /// Block the room: nobody may join it again.
    #[arg(long)]
    pub block: bool,
    /// Remove the room's events, state and indexes after the members are
    /// kicked (the HTTP API's `purge`, which defaults to true there).
    #[arg(long)]
    pub purge: bool,
    /// Configuration sources.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `myelin admin registration-tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token (`POST /_synapse/admin/v1/registration_tokens/new`).
    Create {
        /// The token (generated when absent).
        #[arg(long)]
        token: Option<String>,
        /// Registrations allowed (default: unlimited).
        #[arg(long)]
        uses_allowed: Option<u64>,
        /// Expiry, milliseconds since the Unix epoch (default: never).
        #[arg(long)]
        expiry_time: Option<u64>,
        /// Length of a generated token.
        #[arg(long)]
        length: Option<u64>,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Every token (`GET /_synapse/admin/v1/registration_tokens`).
    List {
        /// `true`: only usable tokens; `false`: only the others.
        #[arg(long)]
        valid: Option<String>,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Runs a `myelin admin` command.
pub async fn run(cmd: AdminCommand) -> Result<(), CliError> {
    let out = match cmd {
        AdminCommand::Users(UsersCommand::List {
            from,
            limit,
            name,
            deactivated,
            config,
        }) => {
            let app = open(&config).await?;
            let query = UsersQuery {
                from,
                limit,
                name,
                user_id: None,
                deactivated: Some(deactivated.to_string()),
            };
            to_value(admin::list_users(&app.accounts, &query).await)?
        }
        AdminCommand::Users(UsersCommand::Deactivate { user_id, config }) => {
            let app = open(&config).await?;
            admin::deactivate(&app.accounts, &user_id)
                .await
                .map_err(service_error)?;
            json!({ "id_server_unbind_result": "success" })
        }
        AdminCommand::Users(UsersCommand::ResetPassword {
            user_id,
            password,
            keep_devices,
            config,
        }) => {
            let password = password.password.ok_or_else(|| {
                CliError::BadInput("a password is required (--password or MYELIN_PASSWORD)".into())
            })?;
            let app = open(&config).await?;
            admin::reset_password(&app.accounts, &user_id, password, !keep_devices)
                .await
                .map_err(service_error)?;
            json!({})
        }
        AdminCommand::Rooms(RoomsCommand::List {
            from,
            limit,
            order_by,
            search_term,
            config,
        }) => {
            let app = open(&config).await?;
            let query = RoomsQuery {
                from,
                limit,
                order_by,
                dir: None,
                search_term,
            };
            to_value(admin::list_rooms(&app.rooms, &query).await)?
        }
        AdminCommand::Rooms(RoomsCommand::Delete(DeleteArgs {
            room_id,
            block,
            purge,
            config,
        })) => {
            let app = open(&config).await?;
            let body = admin::DeleteRoom {
                block,
                purge,
                new_room_user_id: None,
                room_name: None,
                message: None,
                force_purge: false,
            };
            let delete_id = admin::delete_room(&app.accounts, &app.rooms, &room_id, body)
                .await
                .map_err(service_error)?;
            admin::delete_status(&app.rooms, &delete_id)
                .await
                .map_err(service_error)?
        }
        AdminCommand::RegistrationTokens(TokensCommand::Create {
            token,
            uses_allowed,
            expiry_time,
            length,
            config,
        }) => {
            let app = open(&config).await?;
            let body = NewToken {
                token,
                uses_allowed: uses_allowed.map(Value::from),
                expiry_time: expiry_time.map(Value::from),
                length: length.map(Value::from),
            };
            to_value(admin::create_registration_token(&app.accounts, body).await)?
        }
        AdminCommand::RegistrationTokens(TokensCommand::List { valid, config }) => {
            let app = open(&config).await?;
            let tokens = admin::registration_tokens(&app.accounts, valid.as_deref())
                .await
                .map_err(service_error)?;
            json!({ "registration_tokens": tokens })
        }
    };
    let text = serde_json::to_string_pretty(&out).map_err(runtime)?;
    print(&format!("{text}\n"))
}

/// The services over the configured databases.
async fn open(args: &ConfigArgs) -> Result<App, CliError> {
    let config = args.load()?;
    let settings = AppConfig::from_config(&config)?;
    let databases = crate::db::open(&config.databases).await?;
    App::open(&databases, settings, Arc::new(SystemClock))
        .await
        .map_err(runtime)
}

fn to_value<T: serde::Serialize>(result: crate::service::Result<T>) -> Result<Value, CliError> {
    serde_json::to_value(result.map_err(service_error)?).map_err(runtime)
}

/// Refusals (bad input, unknown names) are the user's; the rest run-time.
fn service_error(e: crate::service::Error) -> CliError {
    use crate::service::Error as S;
    match e {
        S::InvalidParam(_)
        | S::InvalidUsername(_)
        | S::NotFound(_)
        | S::Forbidden(_)
        | S::UserInUse => CliError::BadInput(e.to_string()),
        other => runtime(other),
    }
}
