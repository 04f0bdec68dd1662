package bow.ctl;

import bow.control.ControlClient;
import bow.proto.Request;
import bow.proto.Response;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;

/** The --control option and the request/answer round trip every online command shares. */
final class ControlOptions {
    @Option(names = "--control", paramLabel = "PATH",
            description = "bowd's control socket (default: /run/bow/control.sock, or $BOW_RUN/control.sock).")
    Path control;

    Path socket() {
        if (control != null) return control;
        String run = System.getenv("BOW_RUN");
        return Path.of(run == null || run.isEmpty() ? "/run/bow" : run).resolve("control.sock");
    }

    /** The answer, or null after printing why there is none (exit code in {@code code[0]}). */
    Response call(Request req, PrintWriter err, int[] code) {
        Response[] answer = {null};
        code[0] = callEach(List.of(req), err, r -> answer[0] = r, r -> answer[0] = r);
        return answer[0];
    }

    /**
     * The requests in turn over one connection (bowd serves any number on one), stopping at the
     * first one not answered OK: each OK answer goes to {@code ok} as it arrives, the failing one
     * (printed) to {@code failed}. Returns the exit code: 0 when every request was answered OK.
     */
    int callEach(List<Request> reqs, PrintWriter err, Consumer<Response> ok, Consumer<Response> failed) {
        try (ControlClient c = ControlClient.connect(socket())) {
            for (Request req : reqs) {
                Response r = c.call(req);
                if (r.getCode() != Response.Code.OK) {
                    err.println("bowctl: " + describe(r));
                    err.flush();
                    failed.accept(r);
                    return exitCode(r.getCode());
                }
                ok.accept(r);
            }
            return ExitCodes.OK;
        } catch (ControlClient.PermissionDeniedException e) {
            err.println("bowctl: permission denied: " + e.getMessage());
            err.flush();
            return ExitCodes.PERMISSION_DENIED;
        } catch (ControlClient.NotRunningException e) {
            err.println("bowctl: " + e.getMessage());
            err.flush();
            return ExitCodes.DAEMON_UNREACHABLE;
        } catch (IOException e) {
            err.println("bowctl: control request failed: " + e.getMessage());
            err.flush();
            return ExitCodes.FAILURE;
        }
    }

    static String describe(Response r) {
        return switch (r.getCode()) {
            case NOT_ALLOWED -> "permission denied: " + r.getMessage();
            case INVALID_STATE -> "invalid state: " + r.getMessage();
            case UNSUPPORTED -> "not supported: " + r.getMessage();
            case BAD_REQUEST -> "bad request: " + r.getMessage();
            default -> r.getMessage();
        };
    }

    static int exitCode(Response.Code c) {
        return switch (c) {
            case OK -> ExitCodes.OK;
            case NOT_ALLOWED -> ExitCodes.PERMISSION_DENIED;
            case INVALID_STATE -> ExitCodes.INVALID_STATE;
            case BAD_REQUEST -> ExitCodes.USAGE;
            default -> ExitCodes.FAILURE;
        };
    }
}
