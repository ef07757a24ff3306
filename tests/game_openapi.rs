//! `docs/game-openapi.yaml` against real responses: every game endpoint (the
//! leaderboards and tournaments of issue 18 too) is
//! called (successes and the errors with extra fields), and each answer is
//! checked against the schema the file gives for its path, method and
//! status. The file is written in YAML's JSON subset, so it is read here
//! with `serde_json`; the checker below covers the schema keywords the file
//! uses (`$ref`, `type`, `nullable`, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`) and fails on any other, so the
//! file cannot grow a keyword this test would silently ignore.

mod common_api;

use myelin::service::Clock;
use serde_json::{Map, Value, json};

use common_api::{Client, TestServer};

const P: &str = "/_myelin/game/v1";

struct Spec(Value);

impl Spec {
    fn load() -> Spec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/game-openapi.yaml");
        Spec(
            serde_json::from_str(&std::fs::read_to_string(path).expect("game test step"))
                .expect("game test step"),
        )
    }

    /// Checks `got` (a call of `method` on `template`) against the file.
    #[track_caller]
    fn check(&self, method: &str, template: &str, got: &(u16, Value)) {
        let response = &self.0["paths"][template][method]["responses"][got.0.to_string()];
        assert!(
            response.is_object(),
            "{method} {template}: status {} not documented ({})",
            got.0,
            got.1
        );
        let schema = &response["content"]["application/json"]["schema"];
        if let Err(e) = self.validate(schema, &got.1, "$") {
            panic!("{method} {template} {}: {e}\n{}", got.0, got.1);
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/components/schemas/").expect("local refs");
                &self.0["components"]["schemas"][name]
            }
            None => schema,
        }
    }

    fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        let s: &Map<String, Value> = schema.as_object().ok_or(format!("{at}: no schema"))?;
        for key in s.keys() {
            let known = [
                "type",
                "nullable",
                "properties",
                "required",
                "additionalProperties",
                "items",
                "enum",
                "format",
                "minItems",
                "maxItems",
                "minimum",
                "maximum",
            ];
            if !known.contains(&key.as_str()) {
                return Err(format!("{at}: schema keyword {key} is not checked"));
            }
        }
        if value.is_null() {
            return if s.get("nullable") == Some(&Value::Bool(true)) {
                Ok(())
            } else {
                Err(format!("{at}: null"))
            };
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            return Err(format!("{at}: {value} not in {allowed:?}"));
        }
        let ty = s.get("type").and_then(Value::as_str).unwrap_or("any");
        let fits = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            _ => return Err(format!("{at}: type {ty} is not checked")),
        };
        if !fits {
            return Err(format!("{at}: {value} is not {ty}"));
        }
        if let Some(items) = s.get("items") {
            for (i, v) in value.as_array().expect("game test step").iter().enumerate() {
                self.validate(items, v, &format!("{at}[{i}]"))?;
            }
        }
        if let Some(map) = value.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for required in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = required.as_str().expect("game test step");
                if !map.contains_key(name) {
                    return Err(format!("{at}: missing {name}"));
                }
            }
            for (k, v) in map {
                let here = format!("{at}.{k}");
                match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                    (Some(p), _) => self.validate(p, v, &here)?,
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(extra @ Value::Object(_))) => self.validate(extra, v, &here)?,
                    (None, _) => return Err(format!("{here}: not in the schema")),
                }
            }
        }
        Ok(())
    }
}

#[test]
fn the_checker_rejects_what_the_schema_does_not_allow() {
    let spec = Spec::load();
    let trade = json!({"$ref": "#/components/schemas/Trade"});
    let good = json!({"trade_id": "t", "initiator": "@a:x", "counterparty": "@b:x",
        "give": {"items": [], "currency": {}}, "take": {"items": ["i"], "currency": {"gold": 1}},
        "state": "open", "create_ts": 1, "update_ts": 2});
    spec.validate(&trade, &good, "$").expect("game test step");
    let mut bad = good.clone();
    bad["state"] = json!("lost");
    assert!(spec.validate(&trade, &bad, "$").is_err());
    let mut bad = good.clone();
    bad["extra"] = json!(1);
    assert!(spec.validate(&trade, &bad, "$").is_err());
    let mut bad = good;
    bad["take"]["currency"]["gold"] = json!("1");
    assert!(spec.validate(&trade, &bad, "$").is_err());
}

async fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("game test step");
    c.request(m, &format!("{P}{path}"), body).await
}

#[tokio::test]
async fn every_answer_matches_the_openapi_file() {
    let spec = Spec::load();
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw").await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("game test step");
    let (a, b) = (alice.whoami().await.0, bob.whoami().await.0);
    macro_rules! check {
        ($who:expr, $method:literal, $template:literal, $path:expr, $body:expr) => {{
            let path: &str = &$path;
            let got = call(&$who, $method, path, $body).await;
            spec.check($method, $template, &got);
            got.1
        }};
    }
    let w =
        json!({"objects": [{"collection": "s", "key": "k", "value": {"x": 1}, "version": "*"}]});
    check!(alice, "put", "/storage", "/storage", Some(w.clone()));
    check!(alice, "put", "/storage", "/storage", Some(w)); // 409
    check!(
        alice,
        "put",
        "/storage",
        "/storage",
        Some(
            json!({"objects": [{"collection": "s", "key": "big", "value": {"b": "x".repeat(70_000)}}]})
        )
    ); // 413
    check!(
        alice,
        "put",
        "/storage",
        "/storage",
        Some(json!({"objects": [{"collection": "s", "key": "k2", "value": {}, "owner": b}]}))
    ); // 403
    check!(
        bob,
        "post",
        "/storage/read",
        "/storage/read",
        Some(json!({"object_ids": [{"collection": "s", "key": "k", "owner": a}]}))
    );
    check!(
        alice,
        "post",
        "/storage/read",
        "/storage/read",
        Some(json!({"object_ids": [{"collection": "s", "key": "k", "owner": a}]}))
    );
    check!(
        alice,
        "get",
        "/storage/{collection}",
        "/storage/s?limit=1",
        None
    );
    check!(
        alice,
        "get",
        "/storage/{collection}",
        "/storage/s?limit=0",
        None
    ); // 400
    check!(
        alice,
        "post",
        "/storage/delete",
        "/storage/delete",
        Some(json!({"object_ids": [{"collection": "s", "key": "k"}]}))
    );
    let upd = |user: &str, gold: i64| json!({"updates": [{"user_id": user, "changeset": {"gold": gold}, "metadata": {"m": 1}}]});
    check!(
        alice,
        "post",
        "/wallets/update",
        "/wallets/update",
        Some(upd(&a, 5))
    ); // 403
    check!(
        admin,
        "post",
        "/wallets/update",
        "/wallets/update",
        Some(upd(&b, 50))
    );
    check!(
        admin,
        "post",
        "/wallets/update",
        "/wallets/update",
        Some(upd(&a, -5))
    ); // 409
    check!(bob, "get", "/wallet", "/wallet", None);
    check!(bob, "get", "/wallet/ledger", "/wallet/ledger", None);
    let granted = check!(
        admin,
        "post",
        "/items/grant",
        "/items/grant",
        Some(
            json!({"user_id": a, "items": [{"type": "sword", "quantity": 2, "metadata": {"d": 1}}]})
        )
    );
    let item = granted["item_ids"][0]
        .as_str()
        .expect("game test step")
        .to_owned();
    check!(alice, "get", "/inventory", "/inventory", None);
    check!(
        alice,
        "post",
        "/items/consume",
        "/items/consume",
        Some(json!({"item_id": item, "quantity": 5}))
    ); // 409
    check!(
        alice,
        "post",
        "/items/consume",
        "/items/consume",
        Some(json!({"item_id": item}))
    );
    let opened = check!(
        alice,
        "post",
        "/trades",
        "/trades",
        Some(
            json!({"counterparty": b, "give": {"items": [item]}, "take": {"currency": {"gold": 10}}})
        )
    );
    let t = opened["trade_id"]
        .as_str()
        .expect("game test step")
        .to_owned();
    check!(bob, "get", "/trades", "/trades?state=open", None);
    check!(bob, "get", "/trades/{id}", format!("/trades/{t}"), None);
    check!(bob, "get", "/trades/{id}", "/trades/none", None); // 404
    check!(
        alice,
        "post",
        "/trades/{id}/accept",
        format!("/trades/{t}/accept"),
        Some(json!({}))
    ); // 403
    check!(
        bob,
        "post",
        "/trades/{id}/accept",
        format!("/trades/{t}/accept"),
        Some(json!({}))
    );
    check!(
        bob,
        "post",
        "/trades/{id}/cancel",
        format!("/trades/{t}/cancel"),
        Some(json!({}))
    ); // 409
    let opened = check!(
        bob,
        "post",
        "/trades",
        "/trades",
        Some(json!({"counterparty": a, "give": {"currency": {"gold": 1}}}))
    );
    let t2 = opened["trade_id"]
        .as_str()
        .expect("game test step")
        .to_owned();
    check!(
        alice,
        "post",
        "/trades/{id}/cancel",
        format!("/trades/{t2}/cancel"),
        Some(json!({}))
    );
    let tx = json!({"idempotency_key": "k", "wallets": [{"user_id": a, "changeset": {"gems": 3}}],
        "items": {"grant": [{"user_id": b, "items": [{"type": "shield"}]}]},
        "storage": {"write": [{"collection": "q", "key": "1", "value": {}, "owner": a}]}});
    check!(admin, "post", "/transactions", "/transactions", Some(tx));
    // Leaderboards and tournaments (issue 18).
    let lb = json!({"id": "lb", "reset": "0 0 * * *", "metadata": {"s": 1}});
    check!(
        admin,
        "post",
        "/leaderboards",
        "/leaderboards",
        Some(lb.clone())
    );
    check!(alice, "post", "/leaderboards", "/leaderboards", Some(lb)); // 403
    check!(
        admin,
        "post",
        "/leaderboards",
        "/leaderboards",
        Some(json!({"id": "lb", "sort": "asc"}))
    ); // 409
    check!(
        admin,
        "post",
        "/leaderboards",
        "/leaderboards",
        Some(json!({"id": "x", "metadata": {"b": "x".repeat(17_000)}}))
    ); // 413
    check!(
        admin,
        "post",
        "/leaderboards",
        "/leaderboards",
        Some(json!({"id": "x", "reset": "never"}))
    ); // 400
    check!(alice, "get", "/leaderboards/{id}", "/leaderboards/lb", None);
    check!(
        alice,
        "get",
        "/leaderboards/{id}",
        "/leaderboards/none",
        None
    ); // 404
    let rec = json!({"score": 5, "metadata": {"m": 1}});
    check!(
        alice,
        "post",
        "/leaderboards/{id}/records",
        "/leaderboards/lb/records",
        Some(rec.clone())
    );
    check!(
        bob,
        "post",
        "/leaderboards/{id}/records",
        "/leaderboards/lb/records",
        Some(json!({"score": 3, "owner": a}))
    ); // 403
    check!(
        bob,
        "post",
        "/leaderboards/{id}/records",
        "/leaderboards/lb/records",
        Some(json!({"score": 3}))
    );
    let page = check!(
        alice,
        "get",
        "/leaderboards/{id}/records",
        format!("/leaderboards/lb/records?limit=1&owner_ids={b}"),
        None
    );
    let expiry = page["expiry"].as_u64().expect("game test step");
    check!(
        alice,
        "get",
        "/leaderboards/{id}/records",
        format!("/leaderboards/lb/records?expiry={expiry}&limit=0"),
        None
    ); // 400
    check!(
        alice,
        "get",
        "/leaderboards/{id}/records/{owner}",
        format!("/leaderboards/lb/records/{a}"),
        None
    );
    check!(
        alice,
        "get",
        "/leaderboards/{id}/records/around/{owner}",
        format!("/leaderboards/lb/records/around/{b}?limit=2"),
        None
    );
    check!(
        alice,
        "delete",
        "/leaderboards/{id}/records",
        "/leaderboards/lb/records",
        None
    );
    check!(
        alice,
        "delete",
        "/leaderboards/{id}/records",
        "/leaderboards/lb/records",
        None
    ); // 404
    check!(
        admin,
        "delete",
        "/leaderboards/{id}",
        "/leaderboards/lb",
        None
    );
    let now_s = server.clock.now_ms() / 1000;
    let cup = json!({"id": "cup", "category": 2, "title": "Cup", "start_time": now_s - 10,
        "max_size": 1, "max_num_score": 1, "join_required": true});
    check!(admin, "post", "/tournaments", "/tournaments", Some(cup));
    check!(
        admin,
        "post",
        "/tournaments",
        "/tournaments",
        Some(json!({"id": "late", "start_time": now_s + 100}))
    );
    check!(
        alice,
        "get",
        "/tournaments",
        "/tournaments?category_end=2&limit=1",
        None
    );
    check!(alice, "get", "/tournaments", "/tournaments?limit=0", None); // 400
    check!(alice, "get", "/tournaments/{id}", "/tournaments/cup", None);
    check!(
        alice,
        "post",
        "/tournaments/{id}/records",
        "/tournaments/cup/records",
        Some(json!({"score": 1}))
    ); // 403: not joined
    check!(
        alice,
        "post",
        "/tournaments/{id}/join",
        "/tournaments/cup/join",
        Some(json!({}))
    );
    check!(
        bob,
        "post",
        "/tournaments/{id}/join",
        "/tournaments/cup/join",
        Some(json!({}))
    ); // 409: full
    check!(
        alice,
        "post",
        "/tournaments/{id}/records",
        "/tournaments/cup/records",
        Some(json!({"score": 1}))
    );
    check!(
        alice,
        "post",
        "/tournaments/{id}/records",
        "/tournaments/cup/records",
        Some(json!({"score": 1}))
    ); // 409: max_num_score
    check!(
        alice,
        "post",
        "/tournaments/{id}/records",
        "/tournaments/late/records",
        Some(json!({"score": 1}))
    ); // 409: not started
    check!(
        alice,
        "get",
        "/tournaments/{id}/records",
        "/tournaments/cup/records",
        None
    );
    check!(
        alice,
        "get",
        "/tournaments/{id}/records/{owner}",
        format!("/tournaments/cup/records/{a}"),
        None
    );
    check!(
        alice,
        "get",
        "/tournaments/{id}/records/around/{owner}",
        format!("/tournaments/cup/records/around/{a}"),
        None
    );
    check!(
        alice,
        "post",
        "/tournaments/{id}/join",
        "/tournaments/none/join",
        Some(json!({}))
    ); // 404
}
