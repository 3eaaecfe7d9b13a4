import NIOCore
import NIOHTTP1

/// Answers a request NIO's HTTP/1.1 parser refuses, then closes the connection: 431 when the head is too
/// large (a header or request line past NIO's limits), 400 for everything else it rejects (a garbage
/// request line, duplicate Content-Length, Content-Length with Transfer-Encoding, obsolete line folding,
/// the HTTP/2 preface). Without it the parser's error reached no one and the client waited, unanswered,
/// for the connection's timeout. An error while an earlier response is still being written only closes
/// (a response cannot be cut in two).
///
/// Sits right after the request decoder; the WebSocket upgrade takes it out with the other HTTP handlers.
final class HTTPErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInFlight = false
    private var failed = false
    private let onError: () -> Void

    /// `onError`: counts a refused request.
    init(onError: @escaping () -> Void) { self.onError = onError }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !failed else { return }
        failed = true
        onError()
        guard !responseInFlight else {
            context.close(promise: nil)
            return
        }
        let status: HTTPResponseStatus = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        let body = context.channel.allocator.buffer(string: #"{"error":"bad_request","message":"\#(Self.describe(parserError))"}"#)
        let headers = HTTPHeaders([("content-type", "application/json"), ("content-length", "\(body.readableBytes)"),
                                   ("connection", "close")])
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in Self.lingeringClose(context) }
    }

    /// Closes the sending side first and the connection a moment later: a client still sending (a huge
    /// header) would otherwise be answered with a reset that can destroy the response before it reads it.
    /// What it sends meanwhile is discarded.
    static func lingeringClose(_ context: ChannelHandlerContext, linger: TimeAmount = .seconds(2)) {
        let loop = context.eventLoop.assumeIsolated()
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.close(mode: .output, promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { result in
            if case .failure = result {
                context.close(promise: nil)  // a channel that cannot half-close
            } else {
                loop.scheduleTask(in: linger) { context.close(promise: nil) }
            }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where !head.isInformational: responseInFlight = true
        case .end: responseInFlight = false
        default: break
        }
        context.write(data, promise: promise)
    }

    static func describe(_ error: HTTPParserError) -> String {
        switch error {
        case .headerOverflow: "the request line or headers are too large"
        case .invalidMethod: "not an HTTP/1.1 request line"
        case .invalidVersion: "unsupported HTTP version (HTTP/1.0 and 1.1 only)"
        case .invalidContentLength, .unexpectedContentLength: "conflicting or invalid Content-Length / Transfer-Encoding"
        case .invalidHeaderToken: "malformed header (obsolete line folding is not accepted)"
        default: "malformed HTTP request"
        }
    }
}

extension HTTPResponseHead {
    fileprivate var isInformational: Bool { status.code >= 100 && status.code < 200 }
}
