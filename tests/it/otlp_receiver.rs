//! An OTLP/HTTP receiver on a free port, as a collector: `POST /v1/traces`
//! with a protobuf body, decoded; anything else is refused.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// The export requests the receiver got, decoded.
pub type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// Starts the receiver: its traces URL and what it receives.
pub async fn start() -> (String, Received) {
    use axum::body::Bytes;
    use prost::Message;
    let received = Received::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let protobuf = headers.get("content-type").and_then(|v| v.to_str().ok())
                    == Some("application/x-protobuf");
                if !protobuf {
                    return (axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                }
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                seen.lock().unwrap().push(request);
                let response = ExportTraceServiceResponse::default();
                (axum::http::StatusCode::OK, response.encode_to_vec())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// The names of the spans received, and the resources' `service.name`s.
pub fn spans(received: &Received) -> (Vec<String>, Vec<String>) {
    let requests = received.lock().unwrap();
    let (mut names, mut services) = (Vec::new(), Vec::new());
    for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
        for kv in resource_spans.resource.iter().flat_map(|r| &r.attributes) {
            if kv.key == "service.name" {
                services.push(format!("{:?}", kv.value));
            }
        }
        for scope in &resource_spans.scope_spans {
            names.extend(scope.spans.iter().map(|s| s.name.clone()));
        }
    }
    (names, services)
}
