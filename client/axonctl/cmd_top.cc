// axonctl top: a live view of the appliance, refreshed every --interval seconds from GET
// /v1/top. On a terminal each frame clears the screen (plain ANSI, works over SSH) and fits
// the terminal (80x24 when its size is unknown); otherwise each frame is a block of plain
// lines followed by a blank line, without escape codes, for logs and pipes.
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <memory>
#include <thread>

#include "api_call.h"
#include "commands.h"
#include "top_view.h"

namespace axon::ctl {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

struct TopOptions {
  double interval_s = 1.0;
  unsigned count = 0;  // 0: until interrupted
};

// One sample, or the exit code of the failed call (printed already).
std::optional<nlohmann::json> sample(GlobalOptions& global, int& exit_code) {
  const ApiRequest request{"GET", "/v1/top", ""};
  ApiOutcome outcome = send_api(global, request);
  if (!outcome.response) {
    exit_code = outcome.exit_code;
    return std::nullopt;
  }
  if (outcome.response->status >= 400) {
    exit_code = report_api_error(global, request, *outcome.response);
    return std::nullopt;
  }
  auto body = nlohmann::json::parse(outcome.response->body, nullptr, false);
  if (!body.is_object()) {
    print_error_to(global, "GET /v1/top answered with something not a JSON object");
    exit_code = kExitApiError;
    return std::nullopt;
  }
  return body;
}

void sleep_interruptibly(double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!g_stop && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

int run_top(GlobalOptions& global, const TopOptions& options) {
  const bool tty = isatty(fileno(global.out)) != 0;
  TopLayout layout;
  if (tty) {
    winsize ws{};
    if (ioctl(fileno(global.out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
      layout.width = ws.ws_col;
      layout.height = ws.ws_row;
    }
  } else {
    layout.height = 0;  // a pipe has no screen to fit
  }
  g_stop = 0;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  int exit_code = kExitOk;
  auto previous = sample(global, exit_code);
  if (!previous) return exit_code;
  for (unsigned shown = 0; !g_stop && (options.count == 0 || shown < options.count); ++shown) {
    sleep_interruptibly(options.interval_s);
    if (g_stop) break;
    auto current = sample(global, exit_code);
    if (!current) return exit_code;
    const auto lines = render_top(*previous, *current, layout);
    std::string frame = tty ? "\x1b[H\x1b[2J" : "";
    for (std::size_t i = 0; i < lines.size(); ++i) {
      frame += lines[i];
      // On a terminal the last row gets no newline, so a full screen does not scroll.
      if (!tty || i + 1 < lines.size()) frame += '\n';
    }
    if (!tty) frame += '\n';
    std::fputs(frame.c_str(), global.out);
    std::fflush(global.out);
    previous = std::move(current);
  }
  if (tty) std::fputs("\n", global.out);
  return kExitOk;
}

}  // namespace

void add_top_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand(
      "top", "Live view: per-lcore rates and busy %, drops and BUSY by reason, stage latency, workers (GET /v1/top)");
  auto options = std::make_shared<TopOptions>();
  cmd->add_option("--interval", options->interval_s, "Seconds between refreshes (default 1)")
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--count", options->count, "Stop after this many refreshes (default: until Ctrl-C)");
  cmd->callback([&global, &selected, options] { selected = [&global, options] { return run_top(global, *options); }; });
}

}  // namespace axon::ctl
