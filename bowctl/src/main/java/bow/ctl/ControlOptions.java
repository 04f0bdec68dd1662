package bow.ctl;

import bow.control.ControlClient;
import bow.proto.Request;
import bow.proto.Response;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;

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
        try (ControlClient c = ControlClient.connect(socket())) {
            Response r = c.call(req);
            code[0] = exitCode(r.getCode());
            if (r.getCode() != Response.Code.OK) {
                err.println("bowctl: " + describe(r));
                err.flush();
            }
            return r;
        } catch (ControlClient.PermissionDeniedException e) {
            err.println("bowctl: permission denied: " + e.getMessage());
            err.flush();
            code[0] = ExitCodes.PERMISSION_DENIED;
            return null;
        } catch (ControlClient.NotRunningException e) {
            err.println("bowctl: " + e.getMessage());
            err.flush();
            code[0] = ExitCodes.DAEMON_UNREACHABLE;
            return null;
        } catch (IOException e) {
            err.println("bowctl: control request failed: " + e.getMessage());
            err.flush();
            code[0] = ExitCodes.FAILURE;
            return null;
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
