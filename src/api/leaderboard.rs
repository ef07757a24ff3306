//! The leaderboard and tournament API, `/_myelin/game/v1/leaderboards/...`
//! and `/_myelin/game/v1/tournaments/...` (issue 18; `docs/leaderboards.md`).
//!
//! Thin handlers, as in `api::game` (whose body and query extractors they
//! share): authenticate, parse the body and the query (a bad number or an
//! unknown shape is 400 `M_INVALID_PARAM`), call one
//! [`crate::service::game::Game`] method, answer its JSON. Record reads
//! take `?expiry=` (ms) to read a past window. Errors map in
//! `api/error.rs`.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde_json::Value;

use super::extract::Auth;
use super::game::{GameJson, GameQuery, PREFIX, PathParam};
use super::{ApiError, AppState};
use crate::service::game::leaderboard::{
    CreateLeaderboard, CreateTournament, RecordsQuery, SubmitRecord,
};

type Answer = Result<Json<Value>, ApiError>;

/// The two path parameters of a record route: board ID and owner.
pub struct BoardOwner(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for BoardOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidParam(e.body_text()))?;
        let mut values = params.iter().map(|(_, v)| v.to_owned());
        match (values.next(), values.next()) {
            (Some(id), Some(owner)) => Ok(BoardOwner(id, owner)),
            _ => Err(ApiError::InvalidParam("missing path parameter".into())),
        }
    }
}

/// A query's pairs, in order (a key may repeat, as `owner_ids` does).
pub struct Pairs(Vec<(String, String)>);

impl Pairs {
    /// The last value of `name` parsed as `T`.
    fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| {
                v.parse()
                    .map_err(|_| ApiError::InvalidParam(format!("{name} is not a valid number")))
            })
            .transpose()
    }

    /// The last value of `name`.
    fn text(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Pairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let GameQuery(pairs) =
            GameQuery::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        Ok(Pairs(pairs))
    }
}

/// Registers every leaderboard and tournament route.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let p = |path: &str| format!("{PREFIX}{path}");
    let mut router = router
        .route(&p("/leaderboards"), post(create_leaderboard))
        .route(
            &p("/leaderboards/{id}"),
            get(leaderboard).delete(delete_leaderboard),
        )
        .route(&p("/tournaments"), post(create_tournament).get(tournaments))
        .route(&p("/tournaments/{id}"), get(leaderboard))
        .route(&p("/tournaments/{id}/join"), post(join));
    // A tournament is a leaderboard: the same record routes under both.
    for kind in ["/leaderboards", "/tournaments"] {
        router = router
            .route(
                &p(&format!("{kind}/{{id}}/records")),
                post(submit).get(records).delete(delete_record),
            )
            .route(&p(&format!("{kind}/{{id}}/records/{{owner}}")), get(record))
            .route(
                &p(&format!("{kind}/{{id}}/records/around/{{owner}}")),
                get(around),
            );
    }
    router
}

/// `POST .../leaderboards` (admin): create a board.
async fn create_leaderboard(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<CreateLeaderboard>,
) -> Answer {
    Ok(Json(s.game.create_leaderboard(&a, b).await?))
}

/// `GET .../leaderboards/{id}` (and `/tournaments/{id}`): the definition.
async fn leaderboard(State(s): State<AppState>, Auth(_): Auth, PathParam(id): PathParam) -> Answer {
    Ok(Json(s.game.leaderboard(&id).await?))
}

/// `DELETE .../leaderboards/{id}` (admin): delete a board and its records.
async fn delete_leaderboard(
    State(s): State<AppState>,
    Auth(a): Auth,
    PathParam(id): PathParam,
) -> Answer {
    Ok(Json(s.game.delete_leaderboard(&a, &id).await?))
}

/// `POST .../{id}/records`: submit a score.
async fn submit(
    State(s): State<AppState>,
    Auth(a): Auth,
    PathParam(id): PathParam,
    GameJson(b): GameJson<SubmitRecord>,
) -> Answer {
    Ok(Json(s.game.submit_record(&a, &id, b).await?))
}

/// `GET .../{id}/records?limit=&cursor=&owner_ids=&expiry=`: a page.
/// `owner_ids` repeats or is comma-separated.
async fn records(
    State(s): State<AppState>,
    Auth(_): Auth,
    PathParam(id): PathParam,
    q: Pairs,
) -> Answer {
    let owner_ids =
        q.0.iter()
            .filter(|(k, _)| k == "owner_ids")
            .flat_map(|(_, v)| v.split(','))
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
    let query = RecordsQuery {
        limit: q.parse("limit")?,
        cursor: q.text("cursor").filter(|c| !c.is_empty()),
        expiry: q.parse("expiry")?,
        owner_ids,
    };
    Ok(Json(s.game.list_records(&id, query).await?))
}

/// `DELETE .../{id}/records`: delete the caller's record.
async fn delete_record(
    State(s): State<AppState>,
    Auth(a): Auth,
    PathParam(id): PathParam,
) -> Answer {
    Ok(Json(s.game.delete_record(&a, &id).await?))
}

/// `GET .../{id}/records/{owner}?expiry=`: one record with its rank.
async fn record(
    State(s): State<AppState>,
    Auth(_): Auth,
    BoardOwner(id, owner): BoardOwner,
    q: Pairs,
) -> Answer {
    Ok(Json(
        s.game.get_record(&id, &owner, q.parse("expiry")?).await?,
    ))
}

/// `GET .../{id}/records/around/{owner}?limit=&expiry=`.
async fn around(
    State(s): State<AppState>,
    Auth(_): Auth,
    BoardOwner(id, owner): BoardOwner,
    q: Pairs,
) -> Answer {
    Ok(Json(
        s.game
            .around_owner(&id, &owner, q.parse("limit")?, q.parse("expiry")?)
            .await?,
    ))
}

/// `POST .../tournaments` (admin): create a tournament.
async fn create_tournament(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameJson(b): GameJson<CreateTournament>,
) -> Answer {
    Ok(Json(s.game.create_tournament(&a, b).await?))
}

/// `GET .../tournaments?category_start=&category_end=&limit=&cursor=`.
async fn tournaments(State(s): State<AppState>, Auth(_): Auth, q: Pairs) -> Answer {
    Ok(Json(
        s.game
            .list_tournaments(
                q.parse("category_start")?,
                q.parse("category_end")?,
                q.parse("limit")?,
                q.text("cursor").filter(|c| !c.is_empty()).as_deref(),
            )
            .await?,
    ))
}

/// `POST .../tournaments/{id}/join`: join the current window.
async fn join(State(s): State<AppState>, Auth(a): Auth, PathParam(id): PathParam) -> Answer {
    Ok(Json(s.game.join_tournament(&a, &id).await?))
}
