// docs/api/openapi.yaml and the server agree both ways: every route served is documented,
// and every documented path+method is served.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include "axon/controlplane/api_server.h"

namespace axon::controlplane {
namespace {

using Operation = std::pair<std::string, std::string>;  // (METHOD, /path)

std::size_t indent_of(const std::string& line) {
  return line.find_first_not_of(' ');
}

// A line-based reader of the `paths:` section: paths are the keys indented by 2, methods
// the keys indented by 4 below them. Enough for the file's own, checked, layout.
std::set<Operation> documented_operations(const std::string& file) {
  std::ifstream in(file);
  EXPECT_TRUE(in) << "cannot read " << file;
  std::set<Operation> out;
  std::string line, path;
  bool in_paths = false;
  while (std::getline(in, line)) {
    if (line.empty() || line.find_first_not_of(' ') == std::string::npos) continue;
    const std::size_t indent = indent_of(line);
    if (line[indent] == '#') continue;
    if (indent == 0) {
      in_paths = line.rfind("paths:", 0) == 0;
      continue;
    }
    if (!in_paths) continue;
    std::string key = line.substr(indent);
    if (key.back() != ':') continue;  // not a bare key line
    key.pop_back();
    if (key.size() >= 2 && (key.front() == '"' || key.front() == '\'')) key = key.substr(1, key.size() - 2);
    if (indent == 2) {
      path = key;
    } else if (indent == 4) {
      static const std::set<std::string> methods{"get", "put", "post", "delete", "patch", "head", "options", "trace"};
      if (methods.count(key)) {
        std::string upper = key;
        std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
        out.emplace(upper, path);
      }
    }
  }
  return out;
}

TEST(ApiOpenApi, DocumentAndServerAgree) {
  const auto documented = documented_operations(AXON_OPENAPI_YAML);
  ASSERT_FALSE(documented.empty());
  std::set<Operation> served;
  for (const auto& r : ApiServer::routes()) served.emplace(r.method, r.path);
  EXPECT_EQ(served.size(), ApiServer::routes().size()) << "a route is registered twice";
  for (const auto& op : served) {
    EXPECT_TRUE(documented.count(op)) << op.first << " " << op.second << " is served but not in openapi.yaml";
  }
  for (const auto& op : documented) {
    EXPECT_TRUE(served.count(op)) << op.first << " " << op.second << " is in openapi.yaml but not served";
  }
}

TEST(ApiOpenApi, IsValidYamlWithTheSameOperations) {
  // python3-yaml (deploy/lib/common.sh) parses the file for real, so the line reader above
  // cannot be fooled by a layout it does not understand.
  const std::string script =
      "import sys, yaml\n"
      "doc = yaml.safe_load(open(sys.argv[1]))\n"
      "assert doc['openapi'] == '3.0.3', doc['openapi']\n"
      "ops = sorted(m.upper() + ' ' + p for p, item in doc['paths'].items() for m in item\n"
      "             if m in ('get', 'put', 'post', 'delete', 'patch'))\n"
      "for p, item in doc['paths'].items():\n"
      "    for m, op in item.items():\n"
      "        if m == 'parameters': continue\n"
      "        assert 'responses' in op, p + ' ' + m + ' has no responses'\n"
      "print('\\n'.join(ops))\n";
  const std::string dir = ::testing::TempDir();
  const std::string py = dir + "/axon_openapi_check.py";
  const std::string out = dir + "/axon_openapi_ops.txt";
  std::ofstream(py) << script;
  const int rc = std::system(("/usr/bin/python3 " + py + " " + AXON_OPENAPI_YAML + " > " + out).c_str());
  ASSERT_EQ(rc, 0) << "python3 with yaml (python3-yaml) failed to load/check openapi.yaml";
  std::ifstream in(out);
  std::set<Operation> parsed;
  std::string method, path;
  while (in >> method >> path) parsed.emplace(method, path);
  EXPECT_EQ(parsed, documented_operations(AXON_OPENAPI_YAML));
  std::remove(py.c_str());
  std::remove(out.c_str());
}

}  // namespace
}  // namespace axon::controlplane
