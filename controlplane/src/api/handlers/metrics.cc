// /metrics: the daemon's families (ControlApi::metrics) followed by the API layer's own, in
// the Prometheus text format. An ordinary route: token, role and rate limit apply as to any
// read.
#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

void add_metrics(Router& table) {
  table.add(RouteDef{"GET", "/metrics", {}, [](HandlerContext& ctx, const Call&) {
                       auto text = ctx.api.metrics();
                       if (!text) return error_response(text.error());
                       if (!text->empty() && text->back() != '\n') *text += '\n';
                       *text += ctx.stats.render();
                       http::Response r;
                       r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                       r.body = std::move(*text);
                       return r;
                     }});
}

}  // namespace axon::controlplane::api::handlers
