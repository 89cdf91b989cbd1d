//! The built-in rules of `multiline.preset`: which lines of a stack trace continue the event
//! before them. They follow Fluent Bit's built-in multiline parsers (go, java, python, ruby) and
//! Google's fluent-plugin-detect-exceptions (java, python, go, ruby, php, and its JVM rules for
//! C# and JavaScript), as small state machines: each rule knows where in a trace the event is
//! ([`Stage`]), so that the header of a second trace right after the frames of a first starts a
//! new event instead of joining it.
//!
//! [`Rules::continues`] is the pure decision, one line at a time; [`Rules::first`] gives the
//! stage of a line that starts an event.

use ::regex::Regex;

use super::Preset;

/// Where the pending event is, as far as its preset can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stage {
    /// A log message (or nothing yet): a trace header may still join it.
    #[default]
    Message,
    /// An exception header was read (or a cause: `Caused by: …`), no frame since.
    Header,
    /// Frames of a trace were read: another header starts a new event.
    Frames,
    /// Python: inside `Traceback (most recent call last):`, before its exception line.
    Traceback,
    /// Python: a chained-exception note; a traceback follows.
    Chain,
    /// Python: the exception line that ends a traceback was read.
    Done,
    /// Ruby 2.5–2.7 on a terminal: `Traceback (most recent call last):` and frames in reverse,
    /// before the header line that ends them.
    Reverse,
}

/// Exception headers of the JVM, .NET and JavaScript: `java.lang.IllegalStateException: boom`,
/// `System.InvalidOperationException (0x80131509): …`, `TypeError [ERR_X]: …`.
const JAVA_HEADER: &str = r"^(?:[\w$]+\.)+[\w$]*(?:Exception|Error|Throwable)(?::|$)";
const DOTNET_HEADER: &str = r"^(?:[\w`]+\.)+[\w`]*Exception(?: \(0x[0-9A-Fa-f]+\))?(?::|$)";
const NODE_HEADER: &str =
    r"^(?:Uncaught )?(?:[A-Z][\w$]*)?(?:Error|Exception)(?: \[[\w-]+\])?(?::|$)";
/// Go: a function line of a goroutine dump (detect-exceptions' and Fluent Bit's rule).
const GO_FRAME: &str = r"^(?:[^\s.:]+\.)*[^\s.():]+\(";
const GO_GOROUTINE: &str = r"^goroutine \d+ .*\]:$";
/// Go: a register line of a SIGQUIT dump (`rax    0x0`).
const GO_REGISTER: &str = r"^[a-z0-9]{2,6} +0x[0-9a-f]+$";
/// Ruby: an unindented frame (`app/models/x.rb:9:in 'foo'`), and the header of a trace
/// (`app.rb:3:in 'foo': boom (RuntimeError)`).
const RUBY_FRAME: &str = r"^\S.*:\d+:in [`'][^`']*'$";
const RUBY_HEADER: &str = r"^\S.*:\d+:in [`'].*\([A-Z][\w:]*\)$";
/// PHP: `#0 /app/x.php(9): f()`, Xdebug's `PHP   1. {main}() /t.php:0`, `Next Exception: …`.
const PHP_FRAME: &str = r"^(?:#\d+ |PHP +\d+\. |Next [\w\\]+(?::|$))";

/// The compiled rules of one preset.
#[derive(Debug, Clone)]
pub struct Rules {
    preset: Preset,
    /// The exception header (java, dotnet, nodejs), the frame (go, ruby, php).
    a: Option<Regex>,
    /// go: the goroutine line; ruby: the header.
    b: Option<Regex>,
    /// go: a register line.
    c: Option<Regex>,
}

impl Rules {
    pub fn new(preset: Preset) -> Result<Self, String> {
        let re = |p: &str| crate::input::parse::regex::compile(p).map(Some);
        let (a, b, c) = match preset {
            Preset::Java => (re(JAVA_HEADER)?, None, None),
            Preset::Dotnet => (re(DOTNET_HEADER)?, None, None),
            Preset::Nodejs => (re(NODE_HEADER)?, None, None),
            Preset::Python => (None, None, None),
            Preset::Go => (re(GO_FRAME)?, re(GO_GOROUTINE)?, re(GO_REGISTER)?),
            Preset::Ruby => (re(RUBY_FRAME)?, re(RUBY_HEADER)?, None),
            Preset::Php => (re(PHP_FRAME)?, None, None),
        };
        Ok(Rules { preset, a, b, c })
    }

    /// True when `line` (not empty) continues the event at `stage`; updates the stage.
    pub fn continues(&self, line: &str, stage: &mut Stage) -> bool {
        match self.preset {
            Preset::Java => self.jvm(line, stage, &["Caused by:", "Wrapped by:"], |_| false),
            Preset::Dotnet => self.jvm(
                line,
                stage,
                &["--- End of stack trace", "--- End of inner exception"],
                |_| false,
            ),
            // Node's last lines: its version after an uncaught error, the `}` that closes an
            // error's own properties (`{\n  code: 'ERR_X'\n}`)
            Preset::Nodejs => self.jvm(line, stage, &[], |l| {
                l.starts_with("Node.js v") || l.trim_end() == "}"
            }),
            Preset::Python => python(line, stage),
            Preset::Go => self.go(line, stage),
            Preset::Ruby => self.ruby(line, stage),
            Preset::Php => self.php(line, stage),
        }
    }

    /// The stage of `line` when it starts an event.
    pub fn first(&self, line: &str) -> Stage {
        match self.preset {
            Preset::Java | Preset::Dotnet | Preset::Nodejs => {
                let opens = [
                    "Exception in thread ",
                    "Unhandled exception. ",
                    "Unhandled Exception: ",
                ];
                if opens.iter().any(|p| line.starts_with(p)) || self.is_header(line) {
                    Stage::Header
                } else {
                    Stage::Message
                }
            }
            Preset::Python if line.starts_with("Traceback (most recent call last):") => {
                Stage::Traceback
            }
            Preset::Go if go_opens(line) || self.b.as_ref().is_some_and(|r| r.is_match(line)) => {
                Stage::Frames
            }
            Preset::Ruby if self.b.as_ref().is_some_and(|r| r.is_match(line)) => Stage::Frames,
            Preset::Ruby if line.starts_with("Traceback (most recent call last):") => {
                Stage::Reverse
            }
            _ => Stage::Message,
        }
    }

    fn is_header(&self, line: &str) -> bool {
        (line.contains("Exception") || line.contains("Error") || line.contains("Throwable"))
            && self.a.as_ref().is_some_and(|r| r.is_match(line))
    }

    /// Java, .NET and Node.js: indented lines (frames `at …`, `... 5 more`, inner exceptions
    /// ` ---> …`), `also` lines (causes: a header follows), a header under a message, and the
    /// lines `footer` knows.
    fn jvm(&self, line: &str, stage: &mut Stage, also: &[&str], footer: fn(&str) -> bool) -> bool {
        if let Some(rest) = line.strip_prefix([' ', '\t']) {
            let rest = rest.trim_start();
            if rest.starts_with("at ") || rest.starts_with("...") {
                *stage = Stage::Frames;
            } else if rest.starts_with("---> ") || rest.starts_with("Caused by:") {
                *stage = Stage::Header;
            }
            return true;
        }
        if also.iter().any(|p| line.starts_with(p)) {
            *stage = Stage::Header;
            return true;
        }
        if footer(line) {
            return true;
        }
        if *stage == Stage::Message && self.is_header(line) {
            *stage = Stage::Header;
            return true;
        }
        false
    }

    /// Go: after a `panic:` (or a goroutine line under a message), the dump's lines.
    fn go(&self, line: &str, stage: &mut Stage) -> bool {
        let goroutine = || self.b.as_ref().is_some_and(|r| r.is_match(line));
        if *stage != Stage::Frames {
            if goroutine() {
                *stage = Stage::Frames;
                return true;
            }
            return false;
        }
        if go_opens(line) {
            return false; // a second panic
        }
        line.starts_with([' ', '\t'])
            || line.starts_with("[signal ")
            || line.starts_with("created by ")
            || line.starts_with("...additional frames elided...")
            || line.starts_with("PC=0x")
            || line.starts_with("exit status ")
            || goroutine()
            || self.a.as_ref().is_some_and(|r| r.is_match(line))
            || self.c.as_ref().is_some_and(|r| r.is_match(line))
    }

    /// Ruby: frames, indented (`\tfrom a.rb:1:in 'x'`, Rails' `  app/x.rb:9:in …`) or not; a
    /// header under a message; the reversed order of Ruby 2.5–2.7 on a terminal.
    fn ruby(&self, line: &str, stage: &mut Stage) -> bool {
        if line.starts_with([' ', '\t']) {
            if line.contains(":in ") && *stage != Stage::Reverse {
                *stage = Stage::Frames;
            }
            return true;
        }
        if self.a.as_ref().is_some_and(|r| r.is_match(line)) {
            *stage = Stage::Frames;
            return true;
        }
        let header = || self.b.as_ref().is_some_and(|r| r.is_match(line));
        match *stage {
            Stage::Reverse if header() => {
                *stage = Stage::Done;
                true
            }
            Stage::Message if line.starts_with("Traceback (most recent call last):") => {
                *stage = Stage::Reverse;
                true
            }
            Stage::Message if header() => {
                *stage = Stage::Frames;
                true
            }
            _ => false,
        }
    }

    /// PHP: `Stack trace:` and its `#N` frames, `  thrown in …`, chained `Next …`, Laravel's
    /// `[stacktrace]` … `"}`, Xdebug's `PHP Stack trace:`.
    fn php(&self, line: &str, stage: &mut Stage) -> bool {
        let opens = [
            "Stack trace:",
            "PHP Stack trace:",
            "[stacktrace]",
            "[previous exception] ",
        ];
        if opens.iter().any(|p| line.starts_with(p))
            || self.a.as_ref().is_some_and(|r| r.is_match(line))
        {
            *stage = Stage::Frames;
            return true;
        }
        if line.starts_with([' ', '\t']) {
            return true;
        }
        *stage == Stage::Frames && line.trim_end() == "\"}"
    }
}

/// The lines that open a Go dump: a panic, a fatal runtime error, a signal dump.
fn go_opens(line: &str) -> bool {
    line.contains("panic: ")
        || line.starts_with("fatal error: ")
        || line.contains("http: panic serving")
        || [
            "SIGQUIT: ",
            "SIGABRT: ",
            "SIGSEGV: ",
            "SIGBUS: ",
            "SIGILL: ",
        ]
        .iter()
        .any(|p| line.starts_with(p))
}

/// Python: `Traceback (most recent call last):` under a message or a chain note, its indented
/// lines, the notes between chained tracebacks, and the exception line that ends it.
fn python(line: &str, stage: &mut Stage) -> bool {
    if line.starts_with("Traceback (most recent call last):") {
        if matches!(*stage, Stage::Message | Stage::Chain) {
            *stage = Stage::Traceback;
            return true;
        }
        return false; // a second traceback
    }
    if line.starts_with([' ', '\t']) {
        return true;
    }
    if line.starts_with("During handling of the above exception")
        || line.starts_with("The above exception was the direct cause")
    {
        *stage = Stage::Chain;
        return true;
    }
    if *stage == Stage::Traceback {
        *stage = Stage::Done; // the first unindented line names the exception
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Multiline, MultilineRules, DEFAULT_TIMEOUT};
    use super::*;

    /// Feeds the events joined by newlines and checks they come out as the same events: each
    /// table below is a log as the preset must cut it.
    fn cuts(preset: Preset, events: &[&str]) {
        let rules =
            MultilineRules::new(None, Some(preset), DEFAULT_TIMEOUT, 500, 1 << 20).expect("rules");
        let text = events.join("\n");
        let mut m = Multiline::default();
        let mut got: Vec<String> = Vec::new();
        let mut emit = |e: Event<'_>| got.push(e.text.to_string());
        for (i, line) in text.split('\n').enumerate() {
            m.push(&rules, line, i as u64, 0, false, &mut emit);
        }
        m.flush(&mut emit);
        assert_eq!(got, events, "{preset:?}");
    }

    #[test]
    fn java_traces_back_to_back_are_two_events() {
        cuts(
            Preset::Java,
            &[
                "2025-11-23 10:00:00.001 INFO  [main] c.e.App - starting",
                "2025-11-23 10:00:00.002 ERROR [main] c.e.App - failed\njava.lang.IllegalStateException: first\n\tat com.example.A.a(A.java:1)\n\t... 3 more",
                "java.lang.IllegalArgumentException: second\n\tat com.example.B.b(B.java:2)",
                // detect-exceptions' COMPLEX_JAVA_EXC, shortened; Fluent Bit's java test
                "javax.servlet.ServletException: Something bad happened\n    at com.example.myproject.OpenSessionInViewFilter.doFilter(OpenSessionInViewFilter.java:60)\nCaused by: com.example.myproject.MyProjectServletException\n    at com.example.myproject.MyServlet.doPost(MyServlet.java:169)\n    ... 27 more",
                "Exception in thread \"main\" java.lang.IllegalStateException: ..null property\n     at com.example.myproject.Author.getBookIds(xx.java:38)\nCaused by: java.lang.NullPointerException\n     at com.example.myproject.Book.getId(Book.java:22)\n     ... 1 more",
                // logback's rootCauseFirst
                "2025-11-23 10:00:01.001 ERROR [main] c.e.App - wrapped\njava.io.IOException: root\n\tat com.example.C.c(C.java:3)\n\t... 5 common frames omitted\nWrapped by: java.lang.RuntimeException: outer\n\tat com.example.D.d(D.java:4)",
                "single line",
            ],
        );
    }

    #[test]
    fn python_tracebacks_back_to_back_are_two_events() {
        cuts(
            Preset::Python,
            &[
                "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\nValueError: one",
                "Traceback (most recent call last):\n  File \"b.py\", line 2, in <module>\nKeyError: 'two'",
                "ERROR:root:failed\nTraceback (most recent call last):\n  File \"c.py\", line 3, in f\n    g()\nZeroDivisionError: division by zero\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"c.py\", line 5, in <module>\nRuntimeError: wrapped",
                // Fluent Bit's python test
                "Traceback (most recent call last):\n  File \"/base/data/home/runtimes/python27/python27_lib/versions/third_party/webapp2-2.5.2/webapp2.py\", line 1535, in __call__\n    rv = self.handle_exception(request, response, e)\nException: ('spam', 'eggs')",
                "hello world, not multiline",
            ],
        );
    }

    #[test]
    fn go_panics_and_goroutine_dumps() {
        cuts(
            Preset::Go,
            &[
                "2024/01/01 10:00:00 starting",
                // Fluent Bit's and detect-exceptions' go test, shortened
                "panic: my panic\n\ngoroutine 4 [running]:\npanic(0x45cb40, 0x47ad70)\n\t/usr/local/go/src/runtime/panic.go:542 +0x46c fp=0xc42003f7b8 sp=0xc42003f710 pc=0x422f7c\nmain.main.func1(0xc420024120)\n\tfoo.go:6 +0x39 fp=0xc42003f7d8 sp=0xc42003f7b8 pc=0x451339\nruntime.goexit()\n\t/usr/local/go/src/runtime/asm_amd64.s:2337 +0x1 fp=0xc42003f7e0 sp=0xc42003f7d8 pc=0x44b4d1\ncreated by main.main\n\tfoo.go:5 +0x58\n\ngoroutine 1 [chan receive]:\nruntime.gopark(0x4739b8, 0xc420024178, 0x46fcd7, 0xc, 0xc420028e17, 0x3)\n\t/usr/local/go/src/runtime/proc.go:280 +0x12c fp=0xc420053e30 sp=0xc420053e00 pc=0x42503c\nmain.main()\n\tfoo.go:9 +0x6f fp=0xc420053f80 sp=0xc420053f50 pc=0x4512ef",
                // a second panic right after: detect-exceptions' GO_SIGNAL_EXC
                "panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x7fd34f]\n\ngoroutine 5 [running]:\npanics.nilPtrDereference()\n\tpanics/panics.go:33 +0x1f\ncreated by main.main in goroutine 1\n\tserver.go:20 +0x91\nexit status 2",
                "2009/11/10 23:00:00 http: panic serving 127.0.0.1:41234: boom\ngoroutine 18 [running]:\nnet/http.(*conn).serve.func1(0xc000108000)\n\t/usr/local/go/src/net/http/server.go:1801 +0x147\nmain.handler({0x7f0, 0xc0001}, 0x0)\n\t/app/main.go:12 +0x27",
                "fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:\nmain.main()\n\t/app/main.go:5 +0x2d",
                // debug.Stack() under a message
                "2024/01/01 10:00:01 dumping\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:8 +0x1d",
                "one more line, no multiline",
            ],
        );
    }

    #[test]
    fn ruby_backtraces() {
        cuts(
            Preset::Ruby,
            &[
                "I, [2024-01-01T10:00:00.000000 #1]  INFO -- : started",
                // an uncaught exception under a log line, then another one: two events
                "E, [2024-01-01T10:00:00.500000 #1] ERROR -- : request failed\n/app/lib/a.rb:3:in `foo': boom (RuntimeError)\n\tfrom /app/lib/a.rb:7:in `bar'\n\tfrom /app/lib/a.rb:10:in `<main>'",
                "/app/lib/b.rb:1:in 'Object#baz': other (ArgumentError)\n\tfrom /app/lib/b.rb:5:in '<main>'",
                // detect-exceptions' RAILS_EXC, shortened (the line of two spaces is Rails')
                "ActionController::RoutingError (No route matches [GET] \"/settings\"):\n  \n  actionpack (5.1.4) lib/action_dispatch/middleware/debug_exceptions.rb:63:in `call'\n  railties (5.1.4) lib/rails/rack/logger.rb:36:in `call_app'",
                // logger.error(e.backtrace.join("\n")): unindented frames
                "E, [2024-01-01T10:00:01.000000 #1] ERROR -- : failed\napp/models/user.rb:9:in `save'\napp/controllers/users_controller.rb:4:in `create'",
                // Ruby 2.5-2.7 on a terminal: reversed, the header last
                "Traceback (most recent call last):\n\t1: from t.rb:5:in `<main>'\nt.rb:2:in `foo': boom (RuntimeError)",
                "I, [2024-01-01T10:00:02.000000 #1]  INFO -- : done",
            ],
        );
    }

    #[test]
    fn dotnet_exceptions() {
        cuts(
            Preset::Dotnet,
            &[
                "2024-01-01 10:00:00.000 +00:00 [INF] Starting",
                "2024-01-01 10:00:01.000 +00:00 [ERR] Request failed\nSystem.InvalidOperationException: Operation is not valid.\n ---> System.ArgumentException: Value cannot be null. (Parameter 'x')\n   at App.Service.Check(String x) in /src/Service.cs:line 12\n   --- End of inner exception stack trace ---\n   at App.Service.Run() in /src/Service.cs:line 20\n--- End of stack trace from previous location ---\n   at App.Program.Main(String[] args) in /src/Program.cs:line 5",
                // detect-exceptions' CSHARP_EXC (Mono), shortened, right after the first
                "System.Collections.Generic.KeyNotFoundException: The given key was not present in the dictionary.\n  at System.Collections.Generic.Dictionary`2[System.String,System.Int32].get_Item (System.String key) [0x00000] in <filename unknown>:0\n  at File3.Consolidator_Class.Function5 () [0x00007] in /usr/local/google/home/Csharp/another file.csharp:9",
                "Unhandled exception. System.IO.FileNotFoundException: Could not find file '/data/x'.\n   at System.IO.FileStream.ValidateFileHandle(SafeFileHandle fileHandle)\n   at Program.<Main>$(String[] args) in /src/Program.cs:line 1",
                "Npgsql.PostgresException (0x80004005): 23505: duplicate key value\n   at Npgsql.Internal.NpgsqlConnector.ReadMessage()",
                // ASP.NET Core's console logger: the entry's lines are indented
                "fail: Microsoft.AspNetCore.Server.Kestrel[13]\n      Connection id \"0HMF3\", Request id \"0HMF3:00000001\": An unhandled exception was thrown by the application.\n      System.Exception: boom\n         at Program.<>c.<<Main>$>b__0_0() in /src/Program.cs:line 3",
                "info: Microsoft.Hosting.Lifetime[0]\n      Application started.",
            ],
        );
    }

    #[test]
    fn php_errors() {
        cuts(
            Preset::Php,
            &[
                "[2024-01-01 10:00:00] local.INFO: started",
                "PHP Fatal error:  Uncaught Exception: boom in /app/t.php:3\nStack trace:\n#0 /app/t.php(9): f()\n#1 {main}\n  thrown in /app/t.php on line 3",
                // detect-exceptions' PHP_ON_GAE_EXC and PHP_EXC, shortened, back to back
                "PHP Fatal error:  Uncaught exception 'Exception' with message 'message' in /base/errors.php:60\nStack trace:\n#0 [internal function]: ErrorEntryGenerator::{closure}()\n#1 /base/index.php(36): ErrorEntry->__call('raise', Array)\n#2 {main}\n  thrown in /base/errors.php on line 60",
                "exception 'Exception' with message 'Custom exception' in /home/joe/work/test-php/test.php:5\nStack trace:\n#0 /home/joe/work/test-php/test.php(9): func1()\n#1 /home/joe/work/test-php/test.php(13): func2()\n#2 {main}",
                // a chained exception
                "PHP Fatal error:  Uncaught Exception: inner in /t.php:3\nStack trace:\n#0 {main}\n\nNext RuntimeException: outer in /t.php:7\nStack trace:\n#0 {main}\n  thrown in /t.php on line 7",
                // Laravel
                "[2024-01-01 10:00:01] local.ERROR: boom {\"exception\":\"[object] (Exception(code: 0): boom at /app/x.php:10)\n[stacktrace]\n#0 /app/y.php(5): x()\n#1 {main}\n\"}",
                // Xdebug
                "PHP Warning:  Undefined variable $x in /t.php on line 2\nPHP Stack trace:\nPHP   1. {main}() /t.php:0",
                "[2024-01-01 10:00:02] local.INFO: done",
            ],
        );
    }

    #[test]
    fn nodejs_errors() {
        cuts(
            Preset::Nodejs,
            &[
                "2024-01-01T10:00:00.000Z info: listening",
                "2024-01-01T10:00:01.000Z error: request failed\nTypeError: Cannot read properties of undefined (reading 'id')\n    at getUser (/app/src/users.js:10:20)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
                // detect-exceptions' NODE_JS_EXC, shortened, right after
                "ReferenceError: myArray is not defined\n  at next (/app/node_modules/express/lib/router/index.js:256:14)\n  at /app/app.js:52:3",
                "Error [ERR_HTTP_HEADERS_SENT]: Cannot set headers after they are sent to the client\n    at ServerResponse.setHeader (node:_http_outgoing:652:11) {\n  code: 'ERR_HTTP_HEADERS_SENT'\n}",
                // an uncaught exception: source excerpt, error, frames, Node's version
                "/app/index.js:3\n    throw new Error('boom');\n    ^\n\nError: boom\n    at Object.<anonymous> (/app/index.js:3:11)\n    at node:internal/main/run_main_module:28:49\n\nNode.js v20.11.0",
                "2024-01-01T10:00:02.000Z info: done",
            ],
        );
    }

    /// The decision alone, line by line: (preset, stage before, line, continues, stage after).
    #[test]
    fn continuation_table() {
        use Stage::*;
        let cases: &[(Preset, Stage, &str, bool, Stage)] = &[
            (Preset::Java, Message, "java.lang.Error: x", true, Header),
            (Preset::Java, Frames, "java.lang.Error: x", false, Frames),
            (Preset::Java, Header, "\tat a.B.c(B.java:1)", true, Frames),
            (Preset::Java, Frames, "Caused by: x.Y: z", true, Header),
            (Preset::Java, Message, "Error count is 3", false, Message),
            (Preset::Dotnet, Message, "System.Exception: x", true, Header),
            (Preset::Dotnet, Frames, "System.Exception: x", false, Frames),
            (Preset::Nodejs, Frames, "Node.js v20.1.0", true, Frames),
            (Preset::Nodejs, Message, "Error: x", true, Header),
            (Preset::Nodejs, Message, "Errors: 3", false, Message),
            (
                Preset::Python,
                Done,
                "Traceback (most recent call last):",
                false,
                Done,
            ),
            (
                Preset::Python,
                Chain,
                "Traceback (most recent call last):",
                true,
                Traceback,
            ),
            (Preset::Python, Traceback, "KeyError: 'k'", true, Done),
            (Preset::Python, Done, "INFO next", false, Done),
            (Preset::Go, Message, "goroutine 7 [select]:", true, Frames),
            (Preset::Go, Message, "main.main()", false, Message),
            (Preset::Go, Frames, "main.main()", true, Frames),
            (Preset::Go, Frames, "rax    0x0", true, Frames),
            (Preset::Go, Frames, "panic: again", false, Frames),
            (
                Preset::Go,
                Frames,
                "2024/01/01 10:00:00 next",
                false,
                Frames,
            ),
            (Preset::Ruby, Message, "a.rb:1:in `x': y (E)", true, Frames),
            (Preset::Ruby, Frames, "a.rb:1:in `x': y (E)", false, Frames),
            (Preset::Ruby, Message, "a.rb:1:in `x'", true, Frames),
            (Preset::Php, Message, "#0 {main}", true, Frames),
            (Preset::Php, Message, "\"}", false, Message),
            (Preset::Php, Frames, "PHP Notice: x", false, Frames),
        ];
        for (preset, before, line, want, after) in cases {
            let rules = Rules::new(*preset).expect("rules");
            let mut stage = *before;
            assert_eq!(
                (rules.continues(line, &mut stage), stage),
                (*want, *after),
                "{preset:?} at {before:?}: {line:?}"
            );
        }
    }
}
