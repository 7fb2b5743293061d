//! The command-line settings that choose and configure a target, so the
//! binary's `main` only flattens them in and calls [`KubeArgs::connect`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use switchyard_api::duration::parse_duration;

use super::FleetError;
use super::kube_api::KubeError;
use super::kubeconfig::Credentials;
use super::kubernetes::{KubeOptions, KubernetesTarget};

/// Which target a command acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// Gateways through their admin APIs (`--gateways`).
    Local,
    /// The blue and green Deployments of `k8s/` through the Kubernetes API.
    Kubernetes,
}

/// Settings of the `kubernetes` target.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// kubernetes: the namespace [default: the context's, or the pod's, else switchyard].
    #[arg(long, global = true, env = "SWITCHYARD_NAMESPACE")]
    pub namespace: Option<String>,
    /// kubernetes: a kubeconfig file [default: KUBECONFIG, then the pod's service account, then ~/.kube/config].
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// kubernetes: the kubeconfig context [default: its current-context].
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// kubernetes: base name of the Deployments (<name>-blue, <name>-green) and Services (<name>, <name>-<colour>).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_GATEWAY_NAME",
        default_value = "switchyard-gateway"
    )]
    pub gateway_name: String,
    /// kubernetes: the gateway container of the pod template.
    #[arg(long, global = true, default_value = "gateway")]
    pub gateway_container: String,
    /// kubernetes: how long a colour may take to roll out (every replica ready).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_READY_TIMEOUT",
        default_value = "10m"
    )]
    pub ready_timeout: String,
    /// kubernetes: how long the old colour stays up after a promotion before it is scaled to 0.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_SCALE_DOWN_DELAY",
        default_value = "30s"
    )]
    pub scale_down_delay: String,
    /// kubernetes: base URL that reaches the blue pods, for smoke tests [default: http://<name>-blue.<namespace>.svc:8000].
    #[arg(long, global = true, env = "SWITCHYARD_BLUE_URL")]
    pub blue_url: Option<String>,
    /// kubernetes: the same for green.
    #[arg(long, global = true, env = "SWITCHYARD_GREEN_URL")]
    pub green_url: Option<String>,
}

impl KubeArgs {
    /// The options these settings describe.
    ///
    /// # Errors
    /// A message naming the flag that does not parse.
    pub fn options(&self) -> Result<KubeOptions, String> {
        let duration =
            |flag: &str, text: &str| parse_duration(text).map_err(|e| format!("--{flag}: {e}"));
        Ok(KubeOptions {
            namespace: self.namespace.clone().filter(|n| !n.is_empty()),
            name: self.gateway_name.clone(),
            container: self.gateway_container.clone(),
            ready_timeout: duration("ready-timeout", &self.ready_timeout)?,
            scale_down_delay: duration("scale-down-delay", &self.scale_down_delay)?,
            blue_url: self.blue_url.clone(),
            green_url: self.green_url.clone(),
            ..KubeOptions::default()
        })
    }

    /// Finds credentials and connects.
    ///
    /// # Errors
    /// [`FleetError`] naming the flag, file or object at fault.
    pub async fn connect(&self) -> Result<KubernetesTarget, FleetError> {
        let opts = self.options().map_err(|message| KubeError::Unsupported {
            what: "the kubernetes target's settings".into(),
            message,
        })?;
        let creds = Credentials::discover(self.kubeconfig.as_deref(), self.context.as_deref())?;
        KubernetesTarget::connect(creds, opts).await
    }
}
