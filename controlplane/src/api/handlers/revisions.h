// Revisions in the REST layer (docs/api/openapi.yaml, "Revisions and conditional writes"): the
// If-Match header and a body's `revision` field read into a Precondition, and a resource's
// revision added to what a handler answers (its `revision` field, and ETag on one resource).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "api/handlers/respond.h"

namespace axon::controlplane::api::handlers {

// The write's precondition from If-Match (`"<revision>"`, `<revision>` or `*`) and, when
// `body` is given and an object, its `revision` field, which is removed from it (the resource
// readers do not know it). A malformed one, or both given with different revisions ->
// invalid_argument saying the form.
ApiResult<Precondition> precondition_of(const Call& call, json* body);

// Refuses a precondition on a request that cannot take one (a create): invalid_argument.
ApiResult<Ok> expect_no_precondition(const Call& call, json* body, const char* what);

// The revision of one resource. Handlers read it BEFORE the resource itself: a concurrent
// write can then make it older than the resource shown (a write based on it gets 409 and the
// client reads again), never newer (which would let a write based on a stale read through).
std::optional<std::int64_t> revision_of(ControlApi& api, Resource kind, const std::string& key);

// `value` as the reply, with "revision" and an ETag header when `revision` is known.
http::Response with_revision(int status, json value, std::optional<std::int64_t> revision);

// Adds "revision" to the item whose key is `key`, when `revisions` has it.
void add_revision(json& item, const std::map<std::string, std::int64_t>& revisions, const std::string& key);

}  // namespace axon::controlplane::api::handlers
