//! The README's Running section, replayed against the real binary.
//!
//! The transcript is read from README.md itself, so the README cannot promise
//! anything the program does not print. Compared byte for byte: the
//! program's own lines in terminal 1, from `Listening` on (cargo's lines
//! before it differ from machine to machine), and every curl command's
//! output in terminal 2. A line starting with `^C` is where the reader
//! presses Ctrl-C: the test sends SIGINT there, and the rest of that line is
//! what the program prints next. It runs in real time, as a reader would
//! run it (the two curls take ten seconds); the other tests run meanwhile.

use std::time::{Duration, Instant};
use tokio::process::Command;

use crate::support::{Server, LISTENING_PREFIX};

/// The address the README's commands use; the test's server has its own port.
const README_ADDR: &str = "127.0.0.1:7878";

/// What the Running section says each terminal shows.
struct Transcript {
    /// The program's own lines in terminal 1, after cargo's, without `^C`.
    server_lines: Vec<String>,
    /// How many of them come before Ctrl-C is pressed, if it is.
    lines_before_ctrl_c: Option<usize>,
    /// Each curl command in terminal 2 with the lines it prints.
    commands: Vec<(String, Vec<String>)>,
}

fn read_transcript() -> Transcript {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let running = readme
        .split("\n## Running\n")
        .nth(1)
        .expect("README.md has a `## Running` section");
    let block = running
        .split("```")
        .nth(1)
        .expect("the Running section has a code block");
    let (terminal_1, terminal_2) = block
        .split_once("Terminal 2:")
        .expect("the code block has a `Terminal 2:` part");

    let shown: Vec<&str> = terminal_1
        .lines()
        .skip_while(|line| !line.starts_with(LISTENING_PREFIX))
        .take_while(|line| !line.is_empty())
        .collect();
    let lines_before_ctrl_c = shown.iter().position(|line| line.starts_with("^C"));
    let server_lines = shown
        .iter()
        .map(|line| line.trim_start_matches("^C").to_string())
        .collect();

    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    for line in terminal_2.lines().filter(|line| !line.is_empty()) {
        match line.strip_prefix("$ ") {
            Some(command) => commands.push((command.to_string(), Vec::new())),
            None => commands
                .last_mut()
                .expect("output comes after a `$ ` command")
                .1
                .push(line.to_string()),
        }
    }
    Transcript {
        server_lines,
        lines_before_ctrl_c,
        commands,
    }
}

/// The URL of a README command of the form `curl 'URL'`.
fn curl_url(command: &str) -> &str {
    command
        .strip_prefix("curl '")
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("not of the form curl 'URL': {command}"))
}

#[tokio::test]
async fn the_readme_transcript_is_what_the_program_prints() {
    let transcript = read_transcript();
    assert!(
        transcript.server_lines.len() >= 5 && transcript.commands.len() == 2,
        "the README's transcript was not found whole: {:?} {:?}",
        transcript.server_lines,
        transcript.commands
    );

    let mut server = Server::start();
    let our_addr = server.addr.to_string();

    for (command, expected_lines) in &transcript.commands {
        let url = curl_url(command).replace(README_ADDR, &our_addr);
        let seconds: u64 = url
            .rsplit("seconds=")
            .next()
            .and_then(|n| n.parse().ok())
            .expect("the README's URLs end in seconds=N");

        let started = Instant::now();
        let output = Command::new("curl")
            .args(["--silent", "--show-error", &url])
            .output()
            .await
            .expect("curl runs (.ci/run installs it)");
        let took = started.elapsed();

        let expected_stdout: String = expected_lines.iter().map(|l| format!("{l}\n")).collect();
        assert!(output.status.success(), "{command}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            expected_stdout,
            "{command} printed something else than the README shows"
        );
        assert!(
            took >= Duration::from_secs(seconds),
            "{command} answered after {took:?}, before its {seconds} s were up"
        );
    }

    let expected_console: Vec<String> = transcript
        .server_lines
        .iter()
        .map(|line| line.replace(README_ADDR, &our_addr))
        .collect();
    // The server prints each "finished" line just before it answers, but
    // the helper reads its stdout on another thread: wait for the lines.
    if let Some(before) = transcript.lines_before_ctrl_c {
        server
            .wait_until("the lines before Ctrl-C", Duration::from_secs(5), |lines| {
                lines.len() >= before
            })
            .await;
        server.send_signal(libc::SIGINT);
        let status = server.wait_for_exit(Duration::from_secs(15)).await;
        assert_eq!(status.code(), Some(0), "after Ctrl-C: {status}");
    }
    let wanted = expected_console.len();
    server
        .wait_until(
            "the whole console transcript",
            Duration::from_secs(5),
            |lines| lines.len() >= wanted,
        )
        .await;
    assert_eq!(server.stdout_lines(), expected_console);
}
