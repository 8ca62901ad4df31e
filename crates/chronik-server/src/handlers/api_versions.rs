use chronik_protocol::versions::api_versions_response;
use kafka_protocol::messages::{ApiVersionsRequest, ResponseKind};

use super::Reply;

pub fn handle(_req: ApiVersionsRequest, _version: i16) -> Reply {
    Reply::now(ResponseKind::ApiVersions(api_versions_response(0)))
}
