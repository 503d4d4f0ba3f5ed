// `axonctl top` and the dashboard against the real daemons (controlplane/tests/daemon_fixture.h:
// axon-controlplane, axon-dataplane with XDP on a veth pair in a namespace named axtop-*, echo
// workers in real cgroups, HTTPS with real tokens), with AXP load sent from the namespace.
//   - top in a detached 80x24 tmux session: two captures seconds apart show the figures, the
//     rates are non-zero under load, the frame changed, and no line exceeds 80 columns;
//   - top into a pipe: plain blocks, no escape codes;
//   - GET /v1/top without or with a bad token: 401;
//   - the dashboard in real headless Chromium: two DOM reads seconds apart show figures that
//     moved, a screenshot is kept under the build dir (tests/axonctl/artefacts/dashboard.png,
//     printed in the test output), and a page given a bad token shows the 401.
#include <atomic>
#include <filesystem>
#include <iostream>
#include <regex>
#include <thread>
#include <utility>

#include "daemon_fixture.h"

namespace axon::controlplane::daemon_it {
namespace {

class TopIt : public ControlplaneDaemon {
 protected:
  TopIt() { net_prefix_ = "axtop"; }

  void SetUp() override {
    ControlplaneDaemon::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    start_controlplane(config_text());
    if (HasFatalFailure()) return;
    ASSERT_TRUE(wait_warm(2)) << workers().dump();
  }

  void TearDown() override {
    stop_load();
    ControlplaneDaemon::TearDown();
  }

  // Requests to agent 7 from the namespace, about one per millisecond, until stop_load() or
  // 60 s, at most 200000: bounded in time and count.
  void start_load() {
    load_ = std::thread([this] {
      AxpClient client(*net_, AF_INET);
      if (!client.ok()) return;
      const auto until = std::chrono::steady_clock::now() + 60s;
      for (std::uint64_t id = 1; !stop_ && id <= 200000 && std::chrono::steady_clock::now() < until; ++id) {
        protocol::Header h{};
        h.type = protocol::MessageType::request;
        h.tenant_id = 1;
        h.agent_id = 7;
        h.request_id = id;
        const std::uint8_t payload[] = {'t', 'o', 'p'};
        if (client.send(h, payload) && client.receive(200ms)) ++replies_;
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  void stop_load() {
    stop_ = true;
    if (load_.joinable()) load_.join();
  }

  std::vector<std::string> axonctl_argv(const std::string& token) const {
    return {AXONCTL_BIN, "--api", "https://127.0.0.1:" + std::to_string(port_), "--ca", cert_, "--token", token};
  }

  std::thread load_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> replies_{0};
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The number after `label` ("req/s 1.2k" -> 1200), or -1 when absent or "-".
double figure_after(const std::string& screen, const std::string& label) {
  const std::regex re(std::regex_replace(label, std::regex(R"([/%])"), R"(\$&)") + R"(\s+([0-9.]+)([kM]?))");
  std::smatch m;
  if (!std::regex_search(screen, m, re)) return -1;
  double v = std::stod(m[1]);
  if (m[2] == "k") v *= 1e3;
  if (m[2] == "M") v *= 1e6;
  return v;
}

// The DONE/s column (last) of the worker rows ("echo-0 ..."), summed.
double worker_done_rate(const std::string& screen) {
  double sum = 0;
  for (const auto& line : lines_of(screen)) {
    if (line.rfind("echo-", 0) != 0) continue;
    std::istringstream in(line);
    std::vector<std::string> cells;
    for (std::string c; in >> c;) cells.push_back(c);
    if (cells.empty() || cells.back() == "-") continue;
    double v = std::atof(cells.back().c_str());
    if (cells.back().back() == 'k') v *= 1e3;
    sum += v;
  }
  return sum;
}

TEST_F(TopIt, TopInA80x24TmuxSessionShowsMovingFiguresWithinTheScreen) {
  start_load();
  const std::string server = "axtop-" + std::to_string(getpid());
  std::string cmd;
  for (const auto& a : axonctl_argv(admin_token_)) cmd += shell_quote(a) + " ";
  cmd += "top --interval 1";
  std::string out;
  ASSERT_EQ(run_command({"tmux", "-L", server, "-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", "80", "-y",
                         "24", cmd},
                        &out),
            0)
      << out;
  struct KillServer {
    std::string name;
    ~KillServer() { run_command({"tmux", "-L", name, "kill-server"}); }
  } kill_server{server};

  auto capture = [&] {
    std::string screen;
    run_command({"tmux", "-L", server, "capture-pane", "-p", "-t", "top"}, &screen);
    return screen;
  };
  // The first frame comes after one interval; wait until it shows traffic.
  std::string first;
  ASSERT_TRUE(eventually(
      [&] {
        first = capture();
        return figure_after(first, "req/s") > 0 && worker_done_rate(first) > 0;
      },
      20s))
      << "the top screen never showed requests under load (" << replies_ << " replies so far):\n"
      << first;
  std::this_thread::sleep_for(2500ms);
  const std::string second = capture();
  ASSERT_GT(replies_.load(), 0u);

  // The stages the control plane reports (per stage once the data plane publishes them).
  std::vector<std::string> stages;
  const json top = call("GET", "/v1/top").parsed();
  for (const auto& s : top.value("stages", json::array())) {
    if (s.value("class", "") == "all") stages.push_back(s.value("stage", ""));
  }
  ASSERT_FALSE(stages.empty());
  for (const std::string* screen : {&std::as_const(first), &second}) {
    for (const char* needle : {"axon top", "data plane ready", "LCORE", "BUSY%", "STAGE", "P99", "drops/s", "BUSY/s",
                               "WORKER", "INT/BG", "echo-0", "echo-1", "standard"}) {
      EXPECT_NE(screen->find(needle), std::string::npos) << needle << " missing from:\n" << *screen;
    }
    EXPECT_GT(figure_after(*screen, "req/s"), 0) << *screen;
    EXPECT_GT(figure_after(*screen, "resp/s"), 0) << *screen;
    EXPECT_GT(worker_done_rate(*screen), 0) << *screen;
    // Each stage's quantiles of the interval ("<12.3us": an upper bound from pow2 buckets).
    for (const auto& stage : stages) {
      EXPECT_TRUE(
          std::regex_search(*screen, std::regex(stage + R"(( \(pow2\))?\s+all\s+<?[0-9.]+[mun]?s\s+<?[0-9.]+[mun]?s)")))
          << stage << "\n"
          << *screen;
    }
    const auto lines = lines_of(*screen);
    EXPECT_LE(lines.size(), 24u) << *screen;
    for (const auto& line : lines) EXPECT_LE(line.size(), 80u) << "[" << line << "]";
  }
  EXPECT_NE(first, second) << "the screen did not refresh in 2.5 s:\n" << first;
  std::cout << "the second 80x24 capture:\n" << second << std::endl;
}

TEST_F(TopIt, TopIntoAPipePrintsPlainBlocksWithoutEscapeCodes) {
  start_load();
  std::string cmd;
  for (const auto& a : axonctl_argv(reader_token_)) cmd += shell_quote(a) + " ";
  const std::string file = tmp_.path() + "/top.out";
  cmd += "top --interval 0.5 --count 3 > " + shell_quote(file);
  std::string err;
  ASSERT_EQ(run_command({"sh", "-c", cmd}, &err), 0) << err;
  const std::string text = read_file(file);
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  std::size_t frames = 0;
  for (std::size_t at = 0; (at = text.find("axon top", at)) != std::string::npos; ++at) ++frames;
  EXPECT_EQ(frames, 3u) << text;
  EXPECT_NE(text.find("\n\naxon top"), std::string::npos) << "frames are separated by a blank line:\n" << text;
  for (const char* needle : {"LCORE", "STAGE", "WORKER", "echo-0"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle << "\n" << text;
  }
}

TEST_F(TopIt, TopEndpointRefusesMissingAndBadTokens) {
  const std::string none;
  const std::string bad = "not-a-token";
  EXPECT_EQ(call("GET", "/v1/top", "", &none).status, 401);
  EXPECT_EQ(call("GET", "/v1/top", "", &bad).status, 401);
  const Http ok = call("GET", "/v1/top", "", &reader_token_);
  ASSERT_EQ(ok.status, 200) << ok.body;
  const json j = ok.parsed();
  EXPECT_TRUE(j["lcores"].is_array() && !j["lcores"].empty()) << ok.body;
  EXPECT_EQ(j["workers"].size(), 2u) << ok.body;
  // axonctl with a bad token: one error line naming 401, exit code 1.
  std::vector<std::string> argv = axonctl_argv(bad);
  argv.insert(argv.end(), {"top", "--count", "1"});
  std::string out;
  EXPECT_EQ(run_command(argv, &out), 1) << out;
  EXPECT_NE(out.find("401"), std::string::npos) << out;
}

// The data-value attribute of the element with this id in a dumped DOM; -1 when absent or empty.
double dom_value(const std::string& dom, const std::string& id) {
  std::smatch m;
  if (!std::regex_search(dom, m, std::regex("id=\"" + id + "\"[^>]*data-value=\"([0-9.]+)\""))) return -1;
  return std::stod(m[1]);
}

class DashboardIt : public TopIt {
 protected:
  // Headless Chromium on the dashboard URL; returns its stdout (the DOM with --dump-dom).
  std::string chromium(const std::string& url, const std::vector<std::string>& action) {
    std::vector<std::string> argv{"chromium",
                                  "--headless",
                                  "--no-sandbox",
                                  "--disable-gpu",
                                  "--ignore-certificate-errors",
                                  "--user-data-dir=" + tmp_.path() + "/chromium",
                                  "--virtual-time-budget=5000",
                                  "--window-size=1280,1000"};
    argv.insert(argv.end(), action.begin(), action.end());
    argv.push_back(url);
    const std::string out_file = tmp_.path() + "/chromium.out";
    std::string cmd = "exec";
    for (const auto& a : argv) cmd += " " + shell_quote(a);
    cmd += " > " + shell_quote(out_file) + " 2> " + shell_quote(tmp_.path() + "/chromium.err");
    std::string ignored;
    EXPECT_EQ(run_command({"timeout", "60", "sh", "-c", cmd}, &ignored), 0) << read_file(tmp_.path() + "/chromium.err");
    return read_file(out_file);
  }
  std::string url(const std::string& token) const {
    return "https://127.0.0.1:" + std::to_string(port_) + "/dashboard#token=" + token;
  }
};

// Real headless Chromium driven over the DevTools protocol (dashboard_cdp.py), in real time:
// --virtual-time-budget would run the page's 1 s polling in a few real milliseconds, so the
// counters it shows could not move between its samples.
TEST_F(DashboardIt, HeadlessChromiumShowsFiguresThatMoveUnderLoad) {
  std::string probe;
  ASSERT_EQ(run_command({"chromium", "--version"}, &probe), 0) << "Debian's chromium package is needed: " << probe;
  // The page itself loads without a token, and loads nothing from elsewhere.
  const std::string none;
  const Http page = call("GET", "/dashboard", "", &none);
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find("<title>axon dashboard</title>"), std::string::npos);
  EXPECT_FALSE(std::regex_search(page.body, std::regex(R"((src|href|url)\s*[=(]\s*["']?(https?:)?//)")))
      << "nothing is loaded from elsewhere";

  start_load();
  ASSERT_TRUE(eventually([&] { return call("GET", "/v1/top").parsed()["dataplane"].value("requests", 0) > 0; }, 10s));
  const std::string dir = AXON_TOP_ARTEFACT_DIR;
  std::filesystem::create_directories(dir);
  const std::string shot = dir + "/dashboard.png";
  std::filesystem::remove(shot);
  std::string out;
  ASSERT_EQ(run_command(
                {"timeout", "90", "python3", AXON_DASHBOARD_CDP, url(reader_token_), tmp_.path(), shot, "--gap", "2.5"},
                &out),
            0)
      << out;
  const std::string first = read_file(tmp_.path() + "/dom1.html");
  const std::string second = read_file(tmp_.path() + "/dom2.html");
  for (const std::string* dom : {&first, &second}) {
    EXPECT_GE(dom_value(*dom, "samples"), 2) << "the page polled /v1/top at least twice\n" << *dom;
    EXPECT_GT(dom_value(*dom, "rate-requests"), 0) << *dom;
    EXPECT_GT(dom_value(*dom, "rate-responses"), 0) << *dom;
    EXPECT_NE(dom->find("live, every 1 s"), std::string::npos) << *dom;
    EXPECT_TRUE(std::regex_search(
        *dom, std::regex(R"(<tr><td>[a-z_]+( \(pow2 buckets\))?</td><td>all</td><td>(&lt; )?[0-9.]+ (m|n|µ)?s</td>)")))
        << "the per-stage breakdown has quantiles\n"
        << *dom;
    EXPECT_NE(dom->find("echo-0"), std::string::npos) << *dom;
    EXPECT_TRUE(std::regex_search(*dom, std::regex(R"(<polyline points="[0-9.]+,[0-9.]+[^"]*"[^>]*data-series="p99")")))
        << "the latency chart has p99 points\n"
        << *dom;
  }
  const double before = dom_value(first, "total-requests"), after = dom_value(second, "total-requests");
  EXPECT_GT(before, 0) << first;
  EXPECT_GT(after, before) << "the request count did not move between the two DOM reads";
  EXPECT_GT(dom_value(second, "samples"), dom_value(first, "samples"));
  ASSERT_TRUE(std::filesystem::exists(shot) && std::filesystem::file_size(shot) > 1000) << shot;
  std::cout << "dashboard screenshot kept at " << shot << std::endl;
  RecordProperty("dashboard_screenshot", shot);
}

TEST_F(DashboardIt, APageWithABadTokenShowsTheRefusal) {
  std::string probe;
  ASSERT_EQ(run_command({"chromium", "--version"}, &probe), 0) << "Debian's chromium package is needed: " << probe;
  const std::string dom = chromium(url("not-a-token"), {"--dump-dom"});
  EXPECT_NE(dom.find("401: the token was refused"), std::string::npos) << dom;
  EXPECT_EQ(dom_value(dom, "samples"), 0) << dom;
  EXPECT_EQ(dom_value(dom, "total-requests"), -1) << "no figure without a valid token\n" << dom;
}

}  // namespace
}  // namespace axon::controlplane::daemon_it
