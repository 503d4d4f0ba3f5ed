// axonctl tune against the tuning component, in process: local verbs on a sandbox root,
// and --remote through a transport that hands each REST call to TuningService::handle
// with the role of the token it carries (the HTTP server itself is the REST layer's; this
// checks the command line's mapping, the component's routes and roles, and the rendering
// of the API's JSON).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "axon/tuning/service.h"

#include "commands.h"
#include "sandbox.h"

namespace axon::tuning {
namespace {

constexpr const char* kProfile = R"(
[profile]
description = "cli test"
[sysctl]
"vm.swappiness" = 10
"net.core.rmem_max" = ">16777216"
[irq]
steer = "nic"
)";

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

class TuneCli : public ::testing::Test {
 protected:
  void SetUp() override {
    box_.profile("clitest", kProfile);
    ServiceConfig config;
    config.profile = "clitest";
    config.options.root = box_.root();
    config.options.state_dir = box_.state_dir();
    config.options.profile_dirs = {box_.profile_dir()};
    config.options.cores = std::vector<int>{2, 3};
    config.options.interfaces = {"axs0"};
    service_ = std::make_unique<TuningService>(config);
  }

  CliRun run(std::vector<std::string> args) {
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    ctl::GlobalOptions global;
    global.out = out;
    global.err = err;
    global.transport = [this](const ctl::ApiRequest& request) -> Result<client::RestResponse, client::RestError> {
      requests_.push_back(request.method + " " + request.path);
      const auto q = request.path.find('?');
      const std::string path = request.path.substr(0, q);
      const std::string query = q == std::string::npos ? "" : request.path.substr(q + 1);
      auto reply = service_->handle(request.method, path, query, request.body, admin_);
      client::RestResponse response;
      response.status = reply.status;
      response.body = reply.body;
      return response;
    };
    args.insert(args.begin(), "axonctl");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    const int code = ctl::run_axonctl(int(argv.size()), argv.data(), global);
    auto slurp = [](std::FILE* f) {
      std::string s;
      std::rewind(f);
      char buf[4096];
      std::size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
      std::fclose(f);
      return s;
    };
    return CliRun{code, slurp(out), slurp(err)};
  }

  std::vector<std::string> local(const std::string& verb) {
    return {"tune",          verb,
            "--root",        box_.root(),
            "--state-dir",   box_.state_dir(),
            "--profile-dir", box_.profile_dir(),
            "--cores",       "2-3",
            "--interface",   "axs0"};
  }

  test::Sandbox box_;
  std::unique_ptr<TuningService> service_;
  bool admin_ = true;
  std::vector<std::string> requests_;
};

TEST_F(TuneCli, LocalVerbsPrintReadableReportsAndExitCodes) {
  auto args = local("check");
  args.insert(args.end(), {"--profile", "clitest"});
  CliRun r = run(args);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("axon tuning check: profile clitest"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vm.swappiness"), std::string::npos);
  EXPECT_NE(r.out.find("irq 40 (axs0) affinity (+2 like it)"), std::string::npos) << r.out;

  args = local("verify");
  args.insert(args.end(), {"--profile", "clitest"});
  EXPECT_EQ(run(args).code, 1) << "not applied yet: drift";
  args = local("apply");
  args.insert(args.end(), {"--profile", "clitest"});
  r = run(args);
  EXPECT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "10\n");
  args = local("verify");
  args.insert(args.end(), {"--profile", "clitest"});
  r = run(args);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("profile in force"), std::string::npos);

  r = run({"tune", "rollback", "--root", box_.root(), "--state-dir", box_.state_dir()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "60\n");

  args = local("check");
  args.insert(args.end(), {"--profile", "missing"});
  r = run(args);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("no profile 'missing'"), std::string::npos) << r.err;
  args = local("check");
  args.insert(args.end(), {"--profile", "clitest", "--cores", "x"});
  EXPECT_EQ(run(args).code, 2);
}

TEST_F(TuneCli, RemoteVerbsGoThroughTheApiWithRoles) {
  CliRun r = run({"tune", "check", "--remote", "--profile", "clitest"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("axon tuning check: profile clitest"), std::string::npos) << r.out;
  ASSERT_FALSE(requests_.empty());
  EXPECT_EQ(requests_.back(), "GET /v1/tuning/check?profile=clitest");

  admin_ = false;
  r = run({"tune", "apply", "--remote", "--profile", "clitest"});
  EXPECT_EQ(r.code, 1) << "a reader's apply is refused";
  EXPECT_NE(r.err.find("403"), std::string::npos) << r.err;
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "60\n");
  r = run({"tune", "verify", "--remote", "--profile", "clitest"});
  EXPECT_EQ(r.code, 1) << "readers may verify; drift -> 1";

  admin_ = true;
  r = run({"tune", "apply", "--remote", "--profile", "clitest"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(requests_.back(), "POST /v1/tuning/apply");
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "10\n");
  r = run({"--json", "tune", "diff", "--remote", "--profile", "clitest"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("\"verb\": \"diff\""), std::string::npos) << r.out;
  r = run({"tune", "rollback", "--remote"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "60\n");
}

}  // namespace
}  // namespace axon::tuning
