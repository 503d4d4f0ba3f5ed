// /dashboard: the live web dashboard (src/api/dashboard/dashboard.html, embedded at build
// time). The page holds no data, so it loads without a token; every figure it shows comes from
// GET /v1/top, which needs one like any other read.
#include "api/handlers/respond.h"

namespace axon::controlplane::api {
extern const char kDashboardHtml[];
}

namespace axon::controlplane::api::handlers {

void add_dashboard(Router& r) {
  r.add(RouteDef{"GET",
                 "/dashboard",
                 {},
                 [](HandlerContext&, const Call&) {
                   http::Response page;
                   page.content_type = "text/html; charset=utf-8";
                   page.body = kDashboardHtml;
                   // Nothing but the page's own inline script and style, and fetches to this origin;
                   // the token in the URL fragment is never sent, and no referrer leaks the page.
                   page.headers.emplace_back("Content-Security-Policy",
                                             "default-src 'none'; script-src 'unsafe-inline'; style-src "
                                             "'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                                             "frame-ancestors 'none'");
                   page.headers.emplace_back("Referrer-Policy", "no-referrer");
                   page.headers.emplace_back("X-Content-Type-Options", "nosniff");
                   page.headers.emplace_back("Cache-Control", "no-store");
                   return page;
                 },
                 false});
}

}  // namespace axon::controlplane::api::handlers
