//! Requests the apiserver is serving right now, sorted the way its own gauges count them:
//! `apiserver_current_inflight_requests` (by request kind) and `apiserver_longrunning_gauge`
//! (watches, exec, attach, proxy, log, portforward, by resource).

use crate::exchange::Message;
use crate::k8s::request_info::{is_long_running, metric_verb, resolve, scope};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenRequest {
    /// Counted in flight: `read_only` for GET and HEAD, mutating otherwise.
    InFlight { read_only: bool },
    /// Long-running, with the resource labels the apiserver's gauge uses.
    LongRunning {
        verb: String,
        group: String,
        version: String,
        resource: String,
        subresource: String,
        scope: &'static str,
    },
}

impl OpenRequest {
    /// What an open request with this head counts as.
    pub fn of(request: &Message) -> OpenRequest {
        let method = request.header(":method").unwrap_or_default();
        let target = request.header(":path").unwrap_or_default();
        let info = resolve(method, target);
        if is_long_running(&info, method) {
            let content_type = request.header("content-type").unwrap_or_default();
            OpenRequest::LongRunning {
                verb: metric_verb(&info, method, content_type),
                scope: scope(&info),
                group: info.api_group,
                version: info.api_version,
                resource: info.resource,
                subresource: info.subresource,
            }
        } else {
            OpenRequest::InFlight {
                read_only: method == "GET" || method == "HEAD",
            }
        }
    }
}
