//! Every `neo-field` trailer names a field of the request it answers, so a client can point at
//! it: every RPC of every Neo service, found through server reflection, is called with requests
//! a client gets wrong (empty, malformed names, plausible names), and each field the gateway
//! names is looked up in the request message's descriptor.
#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf as _, BufMut as _};
use neo_tests::gateway::Stack;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

const SERVICES: [&str; 8] = [
    "Identity",
    "Tenants",
    "Apps",
    "Builds",
    "Deployments",
    "Events",
    "Runtime",
    "Settings",
];

/// Messages as bytes, both ways: the test speaks to every RPC knowing only its descriptor.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// One RPC: its path, its request type, and whether each side streams.
struct Method {
    path: String,
    input: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// The message types of every file the gateway's services use, by full name (`.pkg.Name`).
struct Messages(BTreeMap<String, DescriptorProto>);

impl Messages {
    fn add(&mut self, prefix: &str, message: &DescriptorProto) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            self.add(&name, nested);
        }
        self.0.insert(name, message.clone());
    }

    /// Whether the dotted `path` names a field of message `type_name` (a map's key ends it).
    fn resolves(&self, type_name: &str, path: &str) -> bool {
        let (first, rest) = match path.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (path, None),
        };
        // `stages[1]`: an element of a repeated field.
        let first = first.split_once('[').map_or(first, |(name, _)| name);
        let Some(message) = self.0.get(type_name) else {
            return false;
        };
        let Some(field) = message.field.iter().find(|f| f.name() == first) else {
            return false;
        };
        let Some(rest) = rest else {
            return true;
        };
        if field.r#type() != Type::Message {
            return false;
        }
        let child = field.type_name();
        let is_map = field.label() == Label::Repeated
            && self
                .0
                .get(child)
                .is_some_and(|m| m.options.as_ref().is_some_and(|o| o.map_entry()));
        is_map || self.resolves(child, rest)
    }

    /// The string fields of `type_name` as dotted paths, top level and one message down.
    fn string_paths(&self, type_name: &str, prefix: &str, depth: usize) -> Vec<String> {
        let Some(message) = self.0.get(type_name) else {
            return Vec::new();
        };
        let mut paths = Vec::new();
        for field in &message.field {
            let path = format!("{prefix}{}", field.name());
            match field.r#type() {
                Type::String => paths.push(path),
                Type::Message if depth == 0 && field.label() != Label::Repeated => {
                    paths.extend(self.string_paths(field.type_name(), &format!("{path}."), 1));
                }
                _ => {}
            }
        }
        paths
    }

    /// A request of `type_name` whose string fields hold plausible values ([`plausible`]),
    /// but `bad` (a path) holds `x!`, a name no field accepts.
    fn request(&self, type_name: &str, prefix: &str, bad: &str, depth: usize) -> Vec<u8> {
        let Some(message) = self.0.get(type_name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut put = |number: i32, bytes: &[u8]| {
            prost::encoding::encode_key(
                u32::try_from(number).unwrap_or(1),
                prost::encoding::WireType::LengthDelimited,
                &mut out,
            );
            prost::encoding::encode_varint(bytes.len() as u64, &mut out);
            out.extend_from_slice(bytes);
        };
        for field in &message.field {
            let path = format!("{prefix}{}", field.name());
            match field.r#type() {
                Type::String if path == bad => put(field.number(), b"x!"),
                Type::String => put(field.number(), plausible(field.name()).as_bytes()),
                // An upload's header (a oneof with its chunks): one message down.
                Type::Message if depth == 0 && field.label() != Label::Repeated => {
                    let inner =
                        self.request(field.type_name(), &format!("{path}."), bad, depth + 1);
                    put(field.number(), &inner);
                }
                _ => {}
            }
        }
        out
    }
}

/// A value a client would plausibly send in a string field called `name`.
fn plausible(name: &str) -> &'static str {
    match name {
        "tenant" => "acme",
        "app" | "entity_id" => "shop",
        "stage" | "from_stage" => "dev",
        "to_stage" => "test",
        "kind" => "app",
        "user" => "alice",
        "password" => "a-password",
        "build_id" => "shop_r1",
        "event_type" => "AppCreated",
        "level" => "info",
        "name" => "GREETING",
        _ => "",
    }
}

async fn descriptors(channel: Channel) -> (Messages, Vec<Method>) {
    let mut reflection = ServerReflectionClient::new(channel);
    let requests = SERVICES.map(|s| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(format!(
            "neo.gateway.v1.{s}"
        ))),
    });
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection")
        .into_inner();
    let mut files = BTreeMap::new();
    while let Some(reply) = replies.message().await.expect("a reflection reply") {
        let Some(MessageResponse::FileDescriptorResponse(found)) = reply.message_response else {
            panic!("not a file descriptor: {reply:?}");
        };
        for bytes in found.file_descriptor_proto {
            let file = FileDescriptorProto::decode(bytes.as_slice()).expect("a descriptor");
            files.insert(file.name().to_owned(), file);
        }
    }
    let mut all = Messages(BTreeMap::new());
    for file in files.values() {
        for message in &file.message_type {
            all.add(&format!(".{}", file.package()), message);
        }
    }
    let methods = files
        .values()
        .flat_map(|f| f.service.iter().map(move |s| (f.package(), s)))
        .filter(|(_, s)| SERVICES.contains(&s.name()))
        .flat_map(|(package, s)| {
            s.method.iter().map(move |m| Method {
                path: format!("/{package}.{}/{}", s.name(), m.name()),
                input: m.input_type().to_owned(),
                client_streaming: m.client_streaming(),
                server_streaming: m.server_streaming(),
            })
        })
        .collect();
    (all, methods)
}

/// `body` with `token` as its bearer.
fn authorized<T>(body: T, token: &str) -> Request<T> {
    let mut request = Request::new(body);
    let value = format!("Bearer {token}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Calls `method` with `body` as `token`'s holder; the error status, if any, within 2 s.
async fn call(channel: Channel, token: &str, method: &Method, body: Vec<u8>) -> Option<Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = PathAndQuery::try_from(method.path.clone()).expect("a method path");
    let authorize = |body| authorized(body, token);
    let attempt = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let one = tokio_stream::iter([body.clone()]);
        match (method.client_streaming, method.server_streaming) {
            (false, false) => grpc
                .unary(authorize(body.clone()), path, Raw)
                .await
                .map(drop),
            (true, false) => grpc
                .client_streaming(authorized(one, token), path, Raw)
                .await
                .map(drop),
            (false, true) => {
                let mut stream = grpc
                    .server_streaming(authorize(body.clone()), path, Raw)
                    .await?
                    .into_inner();
                stream.message().await.map(drop)
            }
            (true, true) => {
                let mut stream = grpc
                    .streaming(authorized(one, token), path, Raw)
                    .await?
                    .into_inner();
                stream.message().await.map(drop)
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Err(status)) => Some(status),
        _ => None,
    }
}

#[tokio::test]
async fn every_named_field_exists_in_the_request() {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    let (all, methods) = descriptors(stack.channel()).await;
    let declared = include_str!("../../proto/neo/gateway/v1/gateway.proto")
        .lines()
        .filter(|l| l.starts_with("  rpc "))
        .count();
    assert_eq!(
        methods.len(),
        declared,
        "every RPC found through reflection"
    );
    let mut named = BTreeSet::new();
    let mut wrong = Vec::new();
    for method in &methods {
        let input = method.input.as_str();
        // Empty, plausible, and each string field in turn malformed; as the platform admin
        // and as the tenant's admin; at once.
        let paths = all.string_paths(input, "", 0);
        let bodies = std::iter::once(Vec::new())
            .chain(std::iter::once(all.request(input, "", "", 0)))
            .chain(paths.iter().map(|bad| all.request(input, "", bad, 0)));
        let calls = bodies.flat_map(|body| {
            [&people.root, &people.alice]
                .map(|token| call(stack.channel(), token, method, body.clone()))
        });
        for status in futures::future::join_all(calls).await {
            {
                let Some(status) = status else {
                    continue;
                };
                let Some(field) = status
                    .metadata()
                    .get(neo_gateway::error::FIELD_METADATA)
                    .and_then(|v| v.to_str().ok())
                else {
                    continue;
                };
                named.insert(method.path.clone());
                if !all.resolves(input, field) {
                    wrong.push(format!(
                        "{} names `{field}`, not a field of {input}: {}",
                        method.path,
                        status.message()
                    ));
                }
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        named.len() > 30,
        "most RPCs name a field for a bad request; only {}: {named:?}",
        named.len()
    );
}
