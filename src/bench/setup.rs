//! What every scenario builds first: accounts, rooms and memberships, with
//! bounded concurrency, a progress bar and the phase time cap.
//!
//! Users are registered as `<prefix><run>r<round>u<i>` (probes:
//! `...p<i>`), where `run` is random per invocation and `round` counts the
//! scenarios of `--scenario all`, so runs never collide on a store that
//! outlives them. With `--login`, users `<prefix>0..<prefix>U-1` and probes
//! `<prefix>U...` must exist with `--password`.
//!
//! Room `r` is created by user `r mod U`; its members are users
//! `(r + k) mod U` for `k < M`, so every user is in about `R·M/U` rooms.

use std::future::Future;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use super::client::{Account, Client, ClientError};
use super::report::SetupReport;
use super::{BenchArgs, BenchError};

/// Shared by the phases of one scenario.
#[derive(Clone)]
pub struct Ctx<'a> {
    /// The arguments.
    pub args: &'a BenchArgs,
    /// The HTTP client (one pool).
    pub client: Client,
    /// Random per invocation; marks this run's events.
    pub run_id: String,
    /// Which scenario of `--scenario all` this is.
    pub round: usize,
}

/// Which accounts.
#[derive(Clone, Copy)]
pub enum Kind {
    /// The U users.
    User,
    /// Extra users the sync scenarios measure.
    Probe,
}

/// The users and rooms of a scenario.
pub struct Population {
    /// The U users.
    pub accounts: Vec<Account>,
    /// Room IDs.
    pub rooms: Vec<String>,
    /// Per room, the indexes (into `accounts`) of its members; the creator
    /// first.
    pub members: Vec<Vec<usize>>,
}

impl Population {
    /// Per user, the indexes of the rooms it is in.
    pub fn rooms_of(&self) -> Vec<Vec<usize>> {
        let mut of = vec![Vec::new(); self.accounts.len()];
        for (room, members) in self.members.iter().enumerate() {
            for &m in members {
                of[m].push(room);
            }
        }
        of
    }
}

impl<'a> Ctx<'a> {
    /// The context of a run: the client (request timeout: the idle hold or
    /// the long-poll timeout, whichever is longer, plus a minute, above any
    /// long-poll the tool makes).
    pub fn new(args: &'a BenchArgs) -> Result<Self, BenchError> {
        let longest = args.hold_secs.max(args.poll_timeout_ms.div_ceil(1000));
        let timeout = std::time::Duration::from_secs(longest + 60);
        Ok(Ctx {
            args,
            client: Client::new(&args.url, timeout).map_err(BenchError::Http)?,
            run_id: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
            round: 0,
        })
    }

    /// This context for scenario number `round`.
    pub fn round(&self, round: usize) -> Self {
        Ctx {
            round,
            ..self.clone()
        }
    }

    /// A progress bar on standard error (hidden with `--quiet` or when
    /// standard error is not a terminal).
    pub fn bar(&self, len: u64, message: &'static str) -> ProgressBar {
        if self.args.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>18} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
        ) {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar
    }

    /// Runs `work` within `--duration-secs`.
    pub async fn capped<T>(
        &self,
        phase: &'static str,
        work: impl Future<Output = Result<T, BenchError>>,
    ) -> Result<T, BenchError> {
        tokio::time::timeout(self.args.phase_cap(), work)
            .await
            .map_err(|_| BenchError::Deadline {
                phase,
                secs: self.args.duration_secs,
            })?
    }

    /// Runs `f(0..n)` with `--setup-concurrency` requests in flight, in
    /// order, within the time cap; the first error ends the phase.
    pub async fn bounded<T, F, Fut>(
        &self,
        phase: &'static str,
        n: usize,
        f: F,
    ) -> Result<Vec<T>, BenchError>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let bar = self.bar(n as u64, phase);
        let work = async {
            let mut out = Vec::with_capacity(n);
            let mut results =
                futures::stream::iter((0..n).map(f)).buffered(self.args.setup_concurrency);
            while let Some(result) = results.next().await {
                out.push(result.map_err(BenchError::request(phase))?);
                bar.inc(1);
            }
            Ok(out)
        };
        let result = self.capped(phase, work).await;
        bar.finish_and_clear();
        result
    }

    /// Registers (or logs in) account `i` of `kind`.
    pub async fn account(&self, kind: Kind, i: usize) -> Result<Account, ClientError> {
        let a = self.args;
        if a.login {
            let n = match kind {
                Kind::User => i,
                Kind::Probe => a.population_users() + i,
            };
            return self
                .client
                .login(&format!("{}{n}", a.user_prefix), &a.password)
                .await;
        }
        let label = match kind {
            Kind::User => 'u',
            Kind::Probe => 'p',
        };
        let localpart = format!("{}{}r{}{label}{i}", a.user_prefix, self.run_id, self.round);
        self.client
            .register(&localpart, &a.password, a.registration_token.as_deref())
            .await
    }

    /// Registers `n` accounts of `kind`.
    pub async fn accounts(
        &self,
        kind: Kind,
        n: usize,
        setup: &mut SetupReport,
    ) -> Result<Vec<Account>, BenchError> {
        let started = std::time::Instant::now();
        let phase = match kind {
            Kind::User => "register users",
            Kind::Probe => "register probes",
        };
        let accounts = self.bounded(phase, n, |i| self.account(kind, i)).await?;
        setup.users += n as u64;
        setup.secs += started.elapsed().as_secs_f64();
        Ok(accounts)
    }

    /// Registers the U users ([`BenchArgs::population_users`]) and creates
    /// the R rooms with M members each.
    pub async fn population(&self, setup: &mut SetupReport) -> Result<Population, BenchError> {
        let a = self.args;
        let users = a.population_users();
        let accounts = self.accounts(Kind::User, users, setup).await?;
        let started = std::time::Instant::now();
        let members: Vec<Vec<usize>> = (0..a.rooms)
            .map(|r| (0..a.members).map(|k| (r + k) % users).collect())
            .collect();
        let rooms = self
            .bounded("create rooms", a.rooms, |r| {
                let creator = &accounts[members[r][0]];
                let name = format!("bench {} room {r}", self.run_id);
                async move { self.client.create_room(creator, &name).await }
            })
            .await?;
        let joins: Vec<(usize, usize)> = members
            .iter()
            .enumerate()
            .flat_map(|(r, m)| m.iter().skip(1).map(move |&u| (r, u)))
            .collect();
        self.bounded("join rooms", joins.len(), |j| {
            let (room, user) = joins[j];
            self.client.join(&accounts[user], &rooms[room])
        })
        .await?;
        setup.rooms += rooms.len() as u64;
        setup.joins += joins.len() as u64;
        setup.secs += started.elapsed().as_secs_f64();
        Ok(Population {
            accounts,
            rooms,
            members,
        })
    }

    /// Joins `account` to every room of `rooms`.
    pub async fn join_all(
        &self,
        account: &Account,
        rooms: &[String],
        setup: &mut SetupReport,
    ) -> Result<(), BenchError> {
        let started = std::time::Instant::now();
        self.bounded("join probe", rooms.len(), |r| {
            self.client.join(account, &rooms[r])
        })
        .await?;
        setup.joins += rooms.len() as u64;
        setup.secs += started.elapsed().as_secs_f64();
        Ok(())
    }
}
