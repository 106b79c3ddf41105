//! Three real `nats-server`s clustered on loopback, with JetStream: what Neo runs on when it must
//! survive the loss of a machine.
//!
//! Each node is a [`NatsServer`] with its own store, client port and route port (kept across
//! [`NatsServer::kill`] and [`NatsServer::restart`], so a killed node comes back as itself and
//! catches up). [`NatsCluster::start`] returns once the cluster has elected its JetStream
//! leader. Clients get every node's URL ([`NatsCluster::urls`]).

use std::time::{Duration, Instant};

use super::{NatsServer, ServerError};

/// Nodes in the cluster.
pub const NODES: usize = 3;
/// How long the cluster may take to elect its JetStream leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restarted node may take to catch up with a stream.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Three clustered nats-servers; all killed when dropped.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three clustered nodes with JetStream and `sync_interval: always` (every write on
    /// disk before it is acknowledged), with `settings` appended to each node's configuration.
    ///
    /// # Errors
    ///
    /// A node that does not start, or no JetStream leader within 30 s.
    pub async fn start(settings: &str) -> Result<NatsCluster, ServerError> {
        let routes = free_ports(NODES)?;
        let all_routes = routes
            .iter()
            .map(|port| format!("\"nats-route://127.0.0.1:{port}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::with_capacity(NODES);
        for (i, route) in routes.iter().enumerate() {
            let node = format!(
                "server_name: n{i}\n\
                 cluster {{\n  name: neo\n  listen: \"127.0.0.1:{route}\"\n  \
                 routes: [{all_routes}]\n}}\n{settings}"
            );
            nodes.push(NatsServer::start_node(node, "  sync_interval: always\n".into()).await?);
        }
        let cluster = NatsCluster { nodes };
        cluster.wait_for_leader().await?;
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated (what `--nats` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client of the whole cluster: it knows every node and reconnects to another when its
    /// node dies.
    ///
    /// # Errors
    ///
    /// When no node answers.
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        let addrs: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .filter_map(|node| node.url().parse().ok())
            .collect();
        async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(10)))
            .connect(addrs)
            .await
    }

    /// Node `i` (0, 1 or 2): to kill it or restart it.
    ///
    /// # Panics
    ///
    /// When `i` is not a node.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// The node whose `server_name` is `name` (`n0`, `n1`, `n2`), e.g. a stream's leader.
    pub fn index_of(name: &str) -> Option<usize> {
        name.strip_prefix('n')?.parse().ok().filter(|i| *i < NODES)
    }

    /// The node leading `stream`, when it has a leader.
    pub async fn leader_of(&self, stream: &str) -> Option<usize> {
        let js = async_nats::jetstream::new(self.connect().await.ok()?);
        let info = stream_info(&js, stream).await?;
        Self::index_of(info.cluster?.leader.as_deref()?)
    }

    /// Waits until node `i` holds `stream` current again (its leader, or a replica with no
    /// lag): a restarted node has caught up.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotReady`] after 60 s.
    pub async fn wait_caught_up(&self, i: usize, stream: &str) -> Result<(), ServerError> {
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let name = format!("n{i}");
        let js = self.connect().await.ok().map(async_nats::jetstream::new);
        loop {
            let cluster = match &js {
                Some(js) => stream_info(js, stream).await.and_then(|info| info.cluster),
                None => None,
            };
            let current = cluster.is_some_and(|c| {
                c.leader.as_deref() == Some(name.as_str())
                    || c.replicas.iter().any(|r| {
                        r.name == name && r.current && !r.offline && r.lag.unwrap_or(0) == 0
                    })
            });
            if current {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(not_ready(
                    &self.nodes[i],
                    "nats-server (catching up)",
                    CATCH_UP_TIMEOUT,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until JetStream answers on every running node (its meta leader is elected).
    ///
    /// # Errors
    ///
    /// [`ServerError::NotReady`] after 30 s.
    pub async fn wait_for_leader(&self) -> Result<(), ServerError> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        for node in &self.nodes {
            loop {
                if jetstream_answers(&node.url()).await {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(not_ready(
                        node,
                        "nats-server (no JetStream leader)",
                        LEADER_TIMEOUT,
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}

/// `stream`'s info (the one read `get_stream` makes).
async fn stream_info(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Option<async_nats::jetstream::stream::Info> {
    Some(js.get_stream(stream).await.ok()?.cached_info().clone())
}

/// `node` was not ready for `what` after `waited`, with the end of its log.
fn not_ready(node: &NatsServer, what: &'static str, waited: Duration) -> ServerError {
    ServerError::NotReady {
        binary: what,
        waited,
        log: node.log_path(),
        log_tail: super::log_tail(&node.log_path(), 0),
    }
}

/// Whether JetStream on `url` answers an account query.
async fn jetstream_answers(url: &str) -> bool {
    let Ok(client) = async_nats::connect(url).await else {
        return false;
    };
    let js = async_nats::jetstream::new(client);
    tokio::time::timeout(Duration::from_secs(2), js.query_account())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// `count` ports free on 127.0.0.1 now.
fn free_ports(count: usize) -> Result<Vec<u16>, ServerError> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ServerError::io("finding free route ports"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ServerError::io("finding free route ports"))
}
