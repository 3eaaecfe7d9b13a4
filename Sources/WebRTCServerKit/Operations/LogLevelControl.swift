import Logging
import Synchronization

/// Bootstraps swift-log with stderr handlers whose level is the server's live log level: what
/// `log_level`, a reload and PUT /api/v1/log_level set. (An app that bootstraps its own logging keeps
/// its own levels; those settings then change nothing.)
public enum LiveLogLevel {
    public static func bootstrap(_ initial: Logger.Level) {
        LogLevelControl.process.current = initial
        LogLevelControl.process.bootstrap()
    }
}

/// The process-wide log level, changeable at run time (SIGHUP reload, PUT /api/v1/log_level). Every
/// logger's handler reads it, so a change applies to loggers that already exist.
final class LogLevelControl: Sendable {
    static let process = LogLevelControl(.info)

    private let level: Mutex<Logger.Level>

    init(_ initial: Logger.Level) { level = Mutex(initial) }

    var current: Logger.Level {
        get { level.withLock { $0 } }
        set { level.withLock { $0 = newValue } }
    }

    /// Bootstraps swift-log with stderr handlers that follow this level.
    func bootstrap() {
        LoggingSystem.bootstrap { [self] label in
            LiveLevelLogHandler(wrapped: StreamLogHandler.standardError(label: label), control: self)
        }
    }
}

/// A handler whose level is the control's current level.
struct LiveLevelLogHandler: LogHandler {
    var wrapped: StreamLogHandler
    let control: LogLevelControl

    var logLevel: Logger.Level {
        get { control.current }
        set { }  // per-logger levels are not used; the process-wide level rules
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) { wrapped.log(event: event) }
}
