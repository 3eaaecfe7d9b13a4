import Logging
import Synchronization

/// The process-wide log level, changeable at run time (SIGHUP reload, PUT /api/v1/log_level). Every
/// logger's handler reads it, so a change applies to loggers that already exist.
final class LogLevelControl: Sendable {
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
