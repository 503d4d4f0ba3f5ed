// Revisions and conditional writes in the REST layer (see revisions.h).
#include "api/handlers/revisions.h"

#include <cctype>
#include <limits>

namespace axon::controlplane::api::handlers {
namespace revisions_detail {

constexpr const char* kForm =
    "send If-Match: \"<revision>\" (the ETag or 'revision' a GET returned), If-Match: <revision>, or If-Match: * "
    "(the resource must exist)";

std::string trimmed(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

// A positive decimal revision, or nullopt.
std::optional<std::int64_t> decimal(const std::string& s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (const char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v <= 0) return std::nullopt;
  return v;
}

ApiResult<Precondition> from_header(const std::string& raw) {
  const std::string value = trimmed(raw);
  if (value == "*") return Precondition{Precondition::Kind::exists, 0};
  std::string digits = value;
  if (digits.size() >= 2 && digits.front() == '"' && digits.back() == '"') digits = digits.substr(1, digits.size() - 2);
  if (const auto revision = decimal(digits)) return Precondition{Precondition::Kind::revision, *revision};
  return api_error(ApiErrorCode::invalid_argument, "malformed If-Match '" + value + "': " + kForm);
}

}  // namespace revisions_detail

ApiResult<Precondition> precondition_of(const Call& call, json* body) {
  Precondition pre;
  if (call.if_match) {
    auto header = revisions_detail::from_header(*call.if_match);
    if (!header) return header.error();
    pre = *header;
  }
  if (body == nullptr || !body->is_object()) return pre;
  const auto field = body->find("revision");
  if (field == body->end()) return pre;
  std::int64_t revision = 0;
  if (field->is_number_unsigned() && field->get<std::uint64_t>() > 0 &&
      field->get<std::uint64_t>() <= std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
    revision = field->get<std::int64_t>();
  } else {
    return api_error(ApiErrorCode::invalid_argument,
                     "'revision' must be the positive integer revision a GET returned (or leave it out)");
  }
  body->erase(field);
  if (pre.kind == Precondition::Kind::revision && pre.revision != revision) {
    return api_error(ApiErrorCode::invalid_argument, "If-Match names revision " + std::to_string(pre.revision) +
                                                         " and the body's 'revision' " + std::to_string(revision) +
                                                         ": send one of them");
  }
  return Precondition{Precondition::Kind::revision, revision};
}

ApiResult<Ok> expect_no_precondition(const Call& call, json* body, const char* what) {
  const auto pre = precondition_of(call, body);
  if (!pre) return pre.error();
  if (pre->kind != Precondition::Kind::none) {
    return api_error(ApiErrorCode::invalid_argument, std::string(what) +
                                                         " takes no If-Match or 'revision': it creates, and a create "
                                                         "of an existing resource is refused with 409 anyway");
  }
  return Ok{};
}

std::optional<std::int64_t> revision_of(ControlApi& api, Resource kind, const std::string& key) {
  const auto all = api.revisions(kind);
  const auto it = all.find(key);
  if (it == all.end()) return std::nullopt;
  return it->second;
}

http::Response with_revision(int status, json value, std::optional<std::int64_t> revision) {
  if (revision) value["revision"] = *revision;
  http::Response r = json_response(status, value);
  if (revision) r.headers.emplace_back("ETag", "\"" + std::to_string(*revision) + "\"");
  return r;
}

void add_revision(json& item, const std::map<std::string, std::int64_t>& revisions, const std::string& key) {
  const auto it = revisions.find(key);
  if (it != revisions.end()) item["revision"] = it->second;
}

}  // namespace axon::controlplane::api::handlers
