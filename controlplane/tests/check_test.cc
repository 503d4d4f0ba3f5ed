// `axon-controlplane --check` refuses what would fail at start (issue 11 item 14): a missing
// certificate file, a port in use, an invalid listen address and a nonexistent worker_user,
// each with a message that says what to fix; a good config passes. [tracing]: a bad
// otlp_endpoint and an unreadable otlp_ca_file are refused naming the key.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/axon-cpcheck-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* name : {"server.crt", "server.key", "tokens"}) std::ofstream(dir_ + "/" + name) << "\n";
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string config(const std::string& listen, const std::string& cert, const std::string& user) const {
    return "[controlplane]\nstate_dir = \"" + dir_ + "/state\"\nlog_dir = \"" + dir_ + "/log\"\nworker_user = \"" +
           user + "\"\n[api]\nlisten = \"" + listen + "\"\ncert_file = \"" + cert + "\"\nkey_file = \"" + dir_ +
           "/server.key\"\ntokens_file = \"" + dir_ + "/tokens\"\nunix_socket = \"\"\n";
  }

  // Runs --check on `text`; returns the exit code, stderr+stdout in `output`.
  int check(const std::string& text, std::string& output) const {
    const std::string path = dir_ + "/cp.toml";
    std::ofstream(path) << text;
    const std::string command = std::string(AXON_CONTROLPLANE_BIN) + " --config " + path + " --check 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return -1;
    std::array<char, 512> buffer{};
    output.clear();
    while (std::fgets(buffer.data(), buffer.size(), pipe) != nullptr) output += buffer.data();
    const int status = ::pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string dir_;
};

TEST_F(CheckTest, AGoodConfigPasses) {
  std::string out;
  EXPECT_EQ(check(config("127.0.0.1:0", dir_ + "/server.crt", "nobody"), out), 0) << out;
}

TEST_F(CheckTest, AMissingCertificateFails) {
  std::string out;
  EXPECT_EQ(check(config("127.0.0.1:0", dir_ + "/missing.crt", "nobody"), out), 1) << out;
  EXPECT_NE(out.find("cert_file " + dir_ + "/missing.crt cannot be read"), std::string::npos) << out;
}

TEST_F(CheckTest, BadTracingSettingsFail) {
  std::string out;
  const std::string base = config("127.0.0.1:0", dir_ + "/server.crt", "nobody");
  EXPECT_EQ(check(base + "[tracing]\notlp_endpoint = \"collector:4318\"\n", out), 1) << out;
  EXPECT_NE(out.find("[tracing] otlp_endpoint: must be an http:// or https:// URL"), std::string::npos) << out;
  EXPECT_EQ(check(base + "[tracing]\nstore_traces = -3\n", out), 1) << out;
  EXPECT_NE(out.find("store_traces must be an integer"), std::string::npos) << out;
  EXPECT_EQ(check(base + "[tracing]\notlp_endpoint = \"https://127.0.0.1:4318/v1/traces\"\notlp_ca_file = \"" + dir_ +
                      "/missing-ca.pem\"\n",
                  out),
            1)
      << out;
  EXPECT_NE(out.find("[tracing] otlp_ca_file " + dir_ + "/missing-ca.pem cannot be read"), std::string::npos) << out;
  EXPECT_EQ(check(base + "[tracing]\notlp_endpoint = \"https://127.0.0.1:4318/v1/traces\"\n", out), 0) << out;
}

TEST_F(CheckTest, APortInUseFails) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string port = std::to_string(ntohs(a.sin_port));
  std::string out;
  EXPECT_EQ(check(config("127.0.0.1:" + port, dir_ + "/server.crt", "nobody"), out), 1) << out;
  EXPECT_NE(out.find("the port is in use"), std::string::npos) << out;
  ::close(fd);
}

TEST_F(CheckTest, AnInvalidListenAddressFails) {
  for (const char* listen : {"localhost:9443", "127.0.0.1", "127.0.0.1:99999", "[::1:9443", "300.1.1.1:9443"}) {
    std::string out;
    EXPECT_EQ(check(config(listen, dir_ + "/server.crt", "nobody"), out), 1) << listen << ": " << out;
    EXPECT_NE(out.find("is invalid"), std::string::npos) << listen << ": " << out;
  }
}

TEST_F(CheckTest, ANonexistentWorkerUserFails) {
  std::string out;
  EXPECT_EQ(check(config("127.0.0.1:0", dir_ + "/server.crt", "axon-no-such-user"), out), 1) << out;
  EXPECT_NE(out.find("user 'axon-no-such-user' does not exist"), std::string::npos) << out;
}

}  // namespace
