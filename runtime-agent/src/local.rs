//! An agent with the process driver and the stage's load balancer, as `neo agent` runs it.
//!
//! Two agents of a stage may run on one machine, sharing the data directory and the load
//! balancer's address (`SO_REUSEPORT`): one holds the stage's lease and acts, the other stands
//! by, routing from the active agent's state file, and takes over when the lease lapses.

use std::net::SocketAddr;
use std::sync::Arc;

use neo_image::Registry;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agent::{Agent, AgentConfig, AgentError};
use crate::driver::DriverError;
use crate::driver::process::edge::Edge;
use crate::driver::process::lb::Balancer;
use crate::driver::process::{ProcessConfig, ProcessDriver};

/// Driver events buffered between the driver and the agent.
const EVENTS: usize = 4096;
/// How long a handing-over agent's load balancer may take to finish its requests.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The local runtime of one stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The load balancer's address is taken or invalid.
    #[error("load balancer on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The driver could not start.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The agent could not start.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// A stage served by local processes.
pub struct LocalRuntime {
    /// The driver (for drills: replica pids).
    pub driver: ProcessDriver,
    /// Where the stage's load balancer listens.
    pub lb_addr: SocketAddr,
    /// Its URL (`http://…` or, serving TLS, `https://…`).
    pub lb_url: String,
    agent: Option<Agent>,
    /// The stage's load balancer (drained when the agent hands over).
    balancer: Option<Balancer>,
    tasks: Vec<JoinHandle<()>>,
    /// Leave the replicas running when dropped (an abandoned agent).
    keep_replicas: bool,
}

impl LocalRuntime {
    /// Starts the stage's load balancer on `lb_listen` (shared with the stage's other agent on
    /// this machine, if any), the process driver and the agent, and returns once the agent
    /// holds the stage's lease: while another agent does, this one stands by (its load
    /// balancer serves meanwhile). Dropping the future stops everything it started.
    ///
    /// # Errors
    /// When the address is taken, or the driver or agent cannot start.
    pub async fn start(
        client: async_nats::Client,
        registry: Arc<Registry>,
        mut process: ProcessConfig,
        mut config: AgentConfig,
        lb_listen: SocketAddr,
    ) -> Result<Self, LocalError> {
        if process.edge.stage.is_empty() {
            process.edge.stage = config.stage.to_string();
        }
        let edge = Edge::new(process.edge.clone());
        let scheme = if edge.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let listener = listen_shared(lb_listen).map_err(|source| LocalError::Listen {
            addr: lb_listen,
            source,
        })?;
        let lb_addr = listener.local_addr().map_err(|source| LocalError::Listen {
            addr: lb_listen,
            source,
        })?;
        process
            .producers
            .get_or_insert_with(|| format!("http://127.0.0.1:{}", lb_addr.port()));
        let (sender, events) = mpsc::channel(EVENTS);
        let (driver, supervisor) = ProcessDriver::start(process, registry.clone(), sender).await?;
        let balancer = Balancer::serve(listener, driver.routes(), edge);
        let lb_url = format!("{scheme}://{lb_addr}");
        config.lb_url.get_or_insert_with(|| lb_url.clone());
        let mut runtime = Self {
            driver: driver.clone(),
            lb_addr,
            lb_url,
            agent: None,
            balancer: Some(balancer),
            tasks: vec![supervisor],
            keep_replicas: false,
        };
        let agent = Agent::start(client, Arc::new(driver), events, registry, config).await?;
        agent.active().await;
        runtime.agent = Some(agent);
        Ok(runtime)
    }

    /// Stops the agent gracefully: its load balancer stops taking connections and finishes
    /// the requests in flight (the stage's other agent, sharing the address, takes the new
    /// ones), the lease is given up (a standby takes over at once) and the replicas are left
    /// running for it.
    pub async fn hand_over(mut self) {
        self.keep_replicas = true;
        if let Some(balancer) = self.balancer.take() {
            balancer.drain(DRAIN).await;
        }
        for task in &self.tasks {
            task.abort();
        }
        self.driver.detach().await;
        if let Some(agent) = self.agent.take() {
            agent.release().await;
        }
    }

    /// The term of the lease the agent holds (`None`: it lost it and stands by again).
    pub fn term(&self) -> Option<u64> {
        self.agent.as_ref().and_then(Agent::term)
    }

    /// Stops the agent as if it were killed: replicas keep running for the next agent.
    pub async fn abandon(mut self) {
        self.keep_replicas = true;
        self.agent.take();
        if let Some(balancer) = self.balancer.take() {
            balancer.abort();
        }
        for task in &self.tasks {
            task.abort();
        }
        self.driver.detach().await;
    }

    /// Stops the agent and every replica.
    pub async fn shutdown(mut self) {
        self.agent.take();
        self.driver.stop_all().await;
        self.keep_replicas = true;
        if let Some(balancer) = self.balancer.take() {
            balancer.abort();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A listener on `addr` that another agent of the stage on this machine may share.
fn listen_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Drop for LocalRuntime {
    /// Aborts every task and, unless abandoned or shut down, kills the replicas: nothing a
    /// test started outlives it.
    fn drop(&mut self) {
        if let Some(balancer) = &self.balancer {
            balancer.abort();
        }
        for task in &self.tasks {
            task.abort();
        }
        if !self.keep_replicas {
            self.driver.kill_now();
        }
    }
}
