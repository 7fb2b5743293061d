//! The `local` target: a fleet of gateways driven through their admin
//! APIs. Every admin call is idempotent, so repeating a step after a failure
//! or a crash is safe.

use std::time::Duration;

use serde::de::DeserializeOwned;
use switchyard_api::admin::{
    ErrorBody, GatewayInfo, LoadRequest, RolloutAnnotation, RouteView, ShadowRequest, Slot, Weights,
};

use super::{FleetError, Target};

/// One gateway.
#[derive(Debug, Clone)]
pub struct Member {
    /// Admin base URL, e.g. `http://127.0.0.1:8003`.
    pub admin: String,
    /// Inference base URL.
    pub http: String,
    /// Metrics URL.
    pub metrics: String,
}

/// A fleet of gateways reached through their admin APIs.
#[derive(Debug, Clone)]
pub struct LocalFleet {
    members: Vec<Member>,
    client: reqwest::Client,
    token: Option<String>,
    load_timeout: Duration,
}

impl LocalFleet {
    /// Connects to every admin URL and asks each gateway where its other
    /// listeners are.
    ///
    /// # Errors
    /// [`FleetError`] naming the first gateway that doesn't answer.
    pub async fn connect(
        admin_urls: &[String],
        token: Option<String>,
        timeout: Duration,
        load_timeout: Duration,
    ) -> Result<LocalFleet, FleetError> {
        if admin_urls.is_empty() {
            return Err(FleetError::Empty);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| FleetError::Member {
                gateway: "-".into(),
                message: e.to_string(),
            })?;
        let mut fleet = LocalFleet {
            members: Vec::new(),
            client,
            token,
            load_timeout,
        };
        for admin in admin_urls {
            let admin = admin.trim_end_matches('/').to_owned();
            let info: GatewayInfo = fleet
                .call(
                    &admin,
                    reqwest::Method::GET,
                    "/admin/info",
                    None::<&()>,
                    None,
                )
                .await?;
            let host = admin
                .split("://")
                .nth(1)
                .and_then(|rest| rest.rsplit_once(':'))
                .map_or("127.0.0.1", |(h, _)| h)
                .to_owned();
            let reach = |bound: &str| {
                // A gateway bound to 0.0.0.0 is reached at its admin host.
                let port = bound.rsplit_once(':').map_or("", |(_, p)| p);
                format!("http://{host}:{port}")
            };
            fleet.members.push(Member {
                http: reach(&info.http),
                metrics: format!("{}/metrics", reach(&info.metrics)),
                admin,
            });
        }
        Ok(fleet)
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    async fn call<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        admin: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<T, FleetError> {
        let member = |message: String| FleetError::Member {
            gateway: admin.to_owned(),
            message,
        };
        let mut request = self.client.request(method, format!("{admin}{path}"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                member("did not answer in time".into())
            } else {
                member(format!("unreachable: {e}"))
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ErrorBody>(&text).map_or(text, |b| b.error);
            return Err(member(format!("{status}: {message}")));
        }
        response
            .json()
            .await
            .map_err(|e| member(format!("answered something that is not the admin API: {e}")))
    }
}

/// One result for the fleet: every member's, or the first failure.
fn all<T>(results: Vec<Result<T, FleetError>>) -> Result<Vec<T>, FleetError> {
    results.into_iter().collect()
}

impl Target for LocalFleet {
    fn describe(&self) -> String {
        format!("{} gateway(s)", self.members.len())
    }

    async fn routes(&self, model: &str) -> Result<Vec<RouteView>, FleetError> {
        let path = format!("/admin/models/{model}");
        // Every member at once: a step takes as long as the slowest gateway.
        let calls = self
            .members
            .iter()
            .map(|m| self.call::<RouteView, ()>(&m.admin, reqwest::Method::GET, &path, None, None));
        all(futures::future::join_all(calls).await)
    }

    async fn load(&self, model: &str, slot: Slot, version: u64) -> Result<(), FleetError> {
        let path = format!("/admin/models/{model}/slots/{slot}");
        let body = LoadRequest { version };
        let calls = self.members.iter().map(|m| {
            self.call::<RouteView, _>(
                &m.admin,
                reqwest::Method::PUT,
                &path,
                Some(&body),
                Some(self.load_timeout),
            )
        });
        all(futures::future::join_all(calls).await).map(drop)
    }

    async fn set_weights(&self, model: &str, weights: Weights) -> Result<(), FleetError> {
        let path = format!("/admin/models/{model}/weights");
        let calls = self.members.iter().map(|m| {
            self.call::<RouteView, _>(&m.admin, reqwest::Method::PUT, &path, Some(&weights), None)
        });
        all(futures::future::join_all(calls).await).map(drop)
    }

    async fn set_shadow(&self, model: &str, percent: u32) -> Result<(), FleetError> {
        let path = format!("/admin/models/{model}/shadow");
        let body = ShadowRequest { percent };
        let calls = self.members.iter().map(|m| {
            self.call::<RouteView, _>(&m.admin, reqwest::Method::PUT, &path, Some(&body), None)
        });
        all(futures::future::join_all(calls).await).map(drop)
    }

    async fn annotate(
        &self,
        model: &str,
        annotation: &RolloutAnnotation,
    ) -> Result<(), FleetError> {
        let path = format!("/admin/models/{model}/rollout");
        let calls = self.members.iter().map(|m| {
            self.call::<serde_json::Value, _>(
                &m.admin,
                reqwest::Method::PUT,
                &path,
                Some(annotation),
                None,
            )
        });
        all(futures::future::join_all(calls).await).map(drop)
    }

    fn inference_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.http.clone()).collect()
    }

    fn metrics_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.metrics.clone()).collect()
    }
}
