//! `gavat dashboard --store …`: the web dashboard alone, read-only, over any store — a saved
//! simulation, or a stopped or running live engine's SQLite or Redis store — until SIGINT
//! or SIGTERM. `gavat run` serves the same pages on its own listener, with the live
//! figures and the operator's writes.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use gavat_experiments::design::Experiment;

use crate::dashboard::{Dashboard, StoreSource};
use crate::live::config::RunConfig;

use super::CliError;
use super::crm::StoreArg;

/// Where `gavat dashboard` listens unless told otherwise: beside `gavat run`'s 8787, so that
/// both can run at once.
const DEFAULT_LISTEN: &str = "127.0.0.1:8788";

/// `gavat dashboard`'s flags.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
    /// An experiment file to compare from the store's log (repeat for several): the
    /// experiment `gavat run --experiment FILE` ran on this store.
    #[arg(long, value_name = "FILE")]
    pub experiment: Vec<PathBuf>,
    /// gavat.toml, for the message previews' templates and bots (without it: the shipped
    /// templates).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The address to listen on (port 0: any free port). Loopback unless you put a TLS
    /// proxy in front of it.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// A host name to answer to besides loopback and the listen address (the name a proxy
    /// forwards); repeat for several. Requests naming any other host get 403.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
}

/// Runs `gavat dashboard`.
pub fn run(args: DashboardArgs) -> Result<(), CliError> {
    let messages = match &args.config {
        Some(path) => RunConfig::from_path(path).map_err(CliError::usage)?,
        None => RunConfig::default(),
    };
    let mut experiments: Vec<Experiment> = Vec::with_capacity(args.experiment.len());
    for path in &args.experiment {
        let design = Experiment::from_path(path).map_err(CliError::usage)?;
        if experiments.iter().any(|e| e.name == design.name) {
            return Err(CliError::usage(anyhow!(
                "--experiment {}: another file already names experiment {:?}",
                path.display(),
                design.name
            )));
        }
        experiments.push(design);
    }
    // Checks the store holds gavat's data (a wrong path or prefix is bad input).
    let _ = args.store.open()?;
    let source = StoreSource::open(&args.store.store, &args.store.redis_prefix, false).map_err(CliError::usage)?;
    let name = args.store.name();
    let dashboard = Dashboard::read_only(source, name.clone(), experiments, messages).map_err(CliError::failure)?;
    let system = actix_rt::System::new();
    system.block_on(async move {
        let server = crate::dashboard::serve(args.listen, actix_web::web::Data::new(dashboard), &args.allowed_hosts)
            .await
            .map_err(CliError::usage)?;
        eprintln!("gavat dashboard: serving {name} read-only on http://{}/ (Ctrl-C stops)", server.local_addr());
        let stop = crate::live::serve::shutdown_signal_saying(
            "gavat dashboard: stopping (a second signal stops at once)",
            "gavat dashboard: stopped at once",
        )
        .map_err(CliError::failure)?;
        stop.await;
        server.stop().await;
        Ok(())
    })
}
