//! The writers of a cycle: each picks writes at random and records which
//! the server acknowledged, until the server is killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng;
use rand::rngs::StdRng;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ClientLog, Device, Session, device_keys, enc};

/// One writer of a cycle.
pub(super) struct Client {
    pub(super) cycle: u32,
    pub(super) user: usize,
    pub(super) user_id: String,
    pub(super) main: Device,
    pub(super) peer: String,
    pub(super) peer_device: String,
    pub(super) room: String,
    pub(super) killed: Arc<AtomicBool>,
    pub(super) rng: StdRng,
    pub(super) log: ClientLog,
}

impl Client {
    /// Writes until the server is gone; the record of what was acknowledged.
    pub(super) async fn run(mut self) -> ClientLog {
        for n in 0u64.. {
            let id = format!("c{}u{}n{n}", self.cycle, self.user);
            let pick = self.rng.random_range(0..100);
            let result = match pick {
                0..40 => self.message(&id).await,
                40..55 => self.state(&id).await,
                55..70 => self.send_to_device(&id).await,
                70..85 => self.account_data().await,
                85..95 => self.one_time_keys(&id).await,
                _ => self.new_device(&id).await,
            };
            match result {
                Ok(()) => {}
                Err(e) if self.killed.load(Ordering::SeqCst) => {
                    let _ = e;
                    break;
                }
                Err(e) => {
                    self.log
                        .failures
                        .push(format!("{id}: no answer before the kill: {e}"));
                    break;
                }
            }
        }
        self.log
    }

    /// Sends a write; `Ok(true)` if acknowledged. An answer other than 200
    /// is a failure (recorded) and counts as not acknowledged.
    async fn send(
        &mut self,
        id: &str,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Option<Value>, reqwest::Error> {
        let (status, body) = self.main.session.call(method, path, Some(body)).await?;
        if status == 200 {
            Ok(Some(body))
        } else {
            self.log
                .failures
                .push(format!("{id}: {path} answered {status}: {body}"));
            Ok(None)
        }
    }

    async fn message(&mut self, id: &str) -> Result<(), reqwest::Error> {
        let txn = format!("txn-{id}");
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            enc(&self.room)
        );
        let content = json!({"msgtype": "m.text", "body": id, "soak_id": id, "cycle": self.cycle});
        self.log.timeline.push((id.to_owned(), false));
        let answer = self.send(id, Method::PUT, &path, content).await?;
        if let Some(body) = answer {
            self.log.timeline.last_mut().expect("pushed").1 = true;
            let event_id = body["event_id"].as_str().unwrap_or_default().to_owned();
            self.log.last_send = Some((txn, event_id));
        }
        Ok(())
    }

    async fn state(&mut self, id: &str) -> Result<(), reqwest::Error> {
        let seq = self.log.state.sent + 1;
        self.log.state.sent = seq;
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.soak/{}",
            enc(&self.room),
            enc(&self.user_id)
        );
        let content = json!({"seq": seq, "soak_id": id, "cycle": self.cycle});
        self.log.timeline.push((id.to_owned(), false));
        if self.send(id, Method::PUT, &path, content).await?.is_some() {
            self.log.timeline.last_mut().expect("pushed").1 = true;
            self.log.state.acked = seq;
        }
        Ok(())
    }

    async fn send_to_device(&mut self, id: &str) -> Result<(), reqwest::Error> {
        let path = format!("/_matrix/client/v3/sendToDevice/m.soak/txn-{id}");
        let body = json!({"messages": {&self.peer: {&self.peer_device: {"soak_id": id}}}});
        self.log.to_device.push((id.to_owned(), false));
        if self.send(id, Method::PUT, &path, body).await?.is_some() {
            self.log.to_device.last_mut().expect("pushed").1 = true;
        }
        Ok(())
    }

    async fn account_data(&mut self) -> Result<(), reqwest::Error> {
        let seq = self.log.account_data.sent + 1;
        self.log.account_data.sent = seq;
        let path = format!(
            "/_matrix/client/v3/user/{}/account_data/m.soak",
            enc(&self.user_id)
        );
        let id = format!("account data {} seq {seq}", self.user_id);
        if self
            .send(&id, Method::PUT, &path, json!({"seq": seq}))
            .await?
            .is_some()
        {
            self.log.account_data.acked = seq;
        }
        Ok(())
    }

    async fn one_time_keys(&mut self, id: &str) -> Result<(), reqwest::Error> {
        let keys: serde_json::Map<String, Value> = (0..2)
            .map(|i| {
                (
                    format!("signed_curve25519:{id}k{i}"),
                    json!({"key": format!("otk-{id}-{i}"), "signatures": {}}),
                )
            })
            .collect();
        self.log.one_time_keys.sent += 2;
        let body = json!({"one_time_keys": keys});
        let path = "/_matrix/client/v3/keys/upload";
        if self.send(id, Method::POST, path, body).await?.is_some() {
            self.log.one_time_keys.acked += 2;
        }
        Ok(())
    }

    /// Logs in on a new device and uploads its device keys; acknowledged
    /// once both are.
    async fn new_device(&mut self, id: &str) -> Result<(), reqwest::Error> {
        let login = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": &self.user_id},
            "password": "soak",
            "device_id": format!("D{id}"),
        });
        let Some(body) = self
            .send(id, Method::POST, "/_matrix/client/v3/login", login)
            .await?
        else {
            return Ok(());
        };
        let device_id = body["device_id"].as_str().unwrap_or_default().to_owned();
        let session = Session {
            token: body["access_token"].as_str().unwrap_or_default().to_owned(),
            ..self.main.session.clone()
        };
        let ed25519 = format!("ed-{id}");
        let upload = json!({"device_keys": device_keys(&self.user_id, &device_id, &ed25519)});
        let (status, answer) = session
            .call(Method::POST, "/_matrix/client/v3/keys/upload", Some(upload))
            .await?;
        if status == 200 {
            self.log.devices.push(Device {
                session,
                device_id,
                ed25519,
            });
        } else {
            self.log.failures.push(format!(
                "{id}: device keys upload answered {status}: {answer}"
            ));
        }
        Ok(())
    }
}
