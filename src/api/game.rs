//! The game API, `/_myelin/game/v1/...` (issue 17; `docs/game.md`): storage
//! objects, wallets and the ledger, items, trades and server transactions.
//!
//! Thin handlers: authenticate ([`Auth`]), parse the JSON body
//! ([`GameJson`]: at most [`MAX_BODY_BYTES`], else 413 `M_TOO_LARGE`; then
//! the check every body passes, `api::body`; invalid JSON 400 `M_NOT_JSON`,
//! the wrong shape 400 `M_BAD_JSON`) and the
//! query ([`GameQuery`], else 400 `M_INVALID_PARAM`), call one
//! [`crate::service::game::Game`] method, answer its JSON. Errors map in
//! `api/error.rs`.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::extract::Auth;
use super::{ApiError, AppState};
use crate::service::game::shapes::*;

/// Largest game request body: the ceiling every request has (4,000,000
/// bytes), whatever `max_request_bytes` says, so a batch fits one
/// transaction. A batch of 100 objects at the 64 KiB value limit is over
/// it (413); 60 such objects fit.
pub const MAX_BODY_BYTES: usize = super::extract::MAX_REQUEST_BYTES_CEILING;

/// The common path of every game endpoint.
pub const PREFIX: &str = "/_myelin/game/v1";

/// A JSON body of type `T`.
pub struct GameJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for GameJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, ApiError> {
        let limit_bytes = MAX_BODY_BYTES;
        let bytes = axum::body::to_bytes(req.into_body(), limit_bytes)
            .await
            .map_err(|_| ApiError::TooLarge { limit_bytes })?;
        super::body::check_json(&bytes)?;
        serde_json::from_slice(&bytes).map(GameJson).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::NotJson(e.to_string())
            } else {
                ApiError::BadJson(e.to_string())
            }
        })
    }
}

/// Query parameters of type `T`.
pub struct GameQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for GameQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| GameQuery(q.0))
            .map_err(|e| ApiError::InvalidParam(e.body_text()))
    }
}

/// The one path parameter of a route.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidParam(e.body_text()))?;
        params
            .iter()
            .next()
            .map(|(_, v)| PathParam(v.to_owned()))
            .ok_or_else(|| ApiError::InvalidParam("missing path parameter".into()))
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// `?owner=&limit=&cursor=` of a listing.
#[derive(serde::Deserialize)]
pub struct ListQuery {
    owner: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `?state=` of the trade list.
#[derive(serde::Deserialize)]
pub struct StateQuery {
    state: Option<String>,
}

/// Registers every game route.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let p = |path: &str| format!("{PREFIX}{path}");
    router
        .route(&p("/storage"), put(write_objects))
        .route(&p("/storage/read"), post(read_objects))
        .route(&p("/storage/delete"), post(delete_objects))
        .route(&p("/storage/{collection}"), get(list_objects))
        .route(&p("/wallet"), get(wallet))
        .route(&p("/wallet/ledger"), get(ledger))
        .route(&p("/wallets/update"), post(update_wallets))
        .route(&p("/items/grant"), post(grant_items))
        .route(&p("/items/consume"), post(consume_item))
        .route(&p("/inventory"), get(inventory))
        .route(&p("/trades"), post(open_trade).get(trades))
        .route(&p("/trades/{id}"), get(trade))
        .route(&p("/trades/{id}/accept"), post(accept_trade))
        .route(&p("/trades/{id}/cancel"), post(cancel_trade))
        .route(&p("/transactions"), post(transaction))
}

/// `PUT /_myelin/game/v1/storage`: write a batch of objects.
async fn write_objects(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<WriteObjects>,
) -> Answer {
    Ok(Json(s.game.write_objects(&a, b).await?))
}

/// `POST /_myelin/game/v1/storage/read`: read objects by ID.
async fn read_objects(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<ReadObjects>,
) -> Answer {
    Ok(Json(s.game.read_objects(&a, b).await?))
}

/// `POST /_myelin/game/v1/storage/delete`: delete a batch of objects.
async fn delete_objects(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<DeleteObjects>,
) -> Answer {
    Ok(Json(s.game.delete_objects(&a, b).await?))
}

/// `GET /_myelin/game/v1/storage/{collection}`: list a collection.
async fn list_objects(
    State(s): State<AppState>,
    Auth(a): Auth,
    PathParam(collection): PathParam,
    GameQuery(q): GameQuery<ListQuery>,
) -> Answer {
    let owner = q.owner.as_deref().filter(|o| !o.is_empty());
    Ok(Json(
        s.game
            .list_objects(&a, &collection, owner, q.limit, q.cursor.as_deref())
            .await?,
    ))
}

/// `GET /_myelin/game/v1/wallet`: the caller's balances.
async fn wallet(State(s): State<AppState>, Auth(a): Auth) -> Answer {
    Ok(Json(s.game.wallet(&a).await?))
}

/// `GET /_myelin/game/v1/wallet/ledger`: the caller's ledger.
async fn ledger(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameQuery(q): GameQuery<ListQuery>,
) -> Answer {
    Ok(Json(s.game.ledger(&a, q.limit, q.cursor.as_deref()).await?))
}

/// `POST /_myelin/game/v1/wallets/update` (admin): apply changesets.
async fn update_wallets(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<WalletsUpdate>,
) -> Answer {
    Ok(Json(s.game.update_wallets(&a, b).await?))
}

/// `POST /_myelin/game/v1/items/grant` (admin): grant items.
async fn grant_items(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<Grant>,
) -> Answer {
    Ok(Json(s.game.grant_items(&a, b).await?))
}

/// `POST /_myelin/game/v1/items/consume`: use up an own item.
async fn consume_item(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<Consume>,
) -> Answer {
    Ok(Json(s.game.consume_item(&a, b).await?))
}

/// `GET /_myelin/game/v1/inventory`: the caller's items.
async fn inventory(State(s): State<AppState>, Auth(a): Auth) -> Answer {
    Ok(Json(s.game.inventory(&a).await?))
}

/// `POST /_myelin/game/v1/trades`: offer a trade.
async fn open_trade(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<OpenTrade>,
) -> Answer {
    Ok(Json(s.game.open_trade(&a, b).await?))
}

/// `GET /_myelin/game/v1/trades?state=`: the caller's trades.
async fn trades(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameQuery(q): GameQuery<StateQuery>,
) -> Answer {
    Ok(Json(s.game.trades(&a, q.state.as_deref()).await?))
}

/// `GET /_myelin/game/v1/trades/{id}`: one trade.
async fn trade(State(s): State<AppState>, Auth(a): Auth, PathParam(id): PathParam) -> Answer {
    Ok(Json(s.game.trade(&a, &id).await?))
}

/// `POST /_myelin/game/v1/trades/{id}/accept`: accept (counterparty).
async fn accept_trade(
    State(s): State<AppState>,
    Auth(a): Auth,
    PathParam(id): PathParam,
) -> Answer {
    Ok(Json(s.game.accept_trade(&a, &id).await?))
}

/// `POST /_myelin/game/v1/trades/{id}/cancel`: cancel (either party).
async fn cancel_trade(
    State(s): State<AppState>,
    Auth(a): Auth,
    PathParam(id): PathParam,
) -> Answer {
    Ok(Json(s.game.cancel_trade(&a, &id).await?))
}

/// `POST /_myelin/game/v1/transactions` (admin): a server transaction.
async fn transaction(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<ServerTransaction>,
) -> Answer {
    Ok(Json(s.game.transaction(&a, b).await?))
}
