package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The shell the project ships or runs (init-scripts/, bin/, vmtest/, pkg/) passes shellcheck at
 * its strictest default (every severity, sourced files followed): any finding fails the test.
 */
class ShellcheckTest {
    static final Path TOP = InitScriptsEndToEndTest.SCRIPTS.toAbsolutePath().getParent();

    @Test
    void shellScriptsHaveNoFindings() throws Exception {
        HostTools.requireTools("shellcheck");
        List<Path> scripts = new ArrayList<>();
        for (String d : List.of("init-scripts", "bin", "vmtest", "pkg")) {
            Path dir = TOP.resolve(d);
            if (!Files.isDirectory(dir)) continue;
            try (Stream<Path> s = Files.list(dir)) {
                s.filter(Files::isRegularFile).filter(ShellcheckTest::isShell).sorted().forEach(scripts::add);
            }
        }
        for (String must : List.of("init-scripts/bow-boot", "init-scripts/bow-lib.sh", "init-scripts/bowd-exec", "bin/bowd", "bin/bowctl", "vmtest/vmrun")) {
            assertTrue(scripts.contains(TOP.resolve(must)), must + " is checked: " + scripts);
        }
        for (Path p : scripts) {
            // from the script's own directory, so that `. "$(dirname "$0")/bow-lib.sh"` is followed
            List<String> cmd = List.of("sh", "-c", "cd \"$(dirname \"$1\")\" && exec shellcheck -x --severity=style \"$(basename \"$1\")\"", "sh", p.toString());
            HostTools.Result r = HostTools.run(cmd, 120);
            assertEquals(0, r.code(), TOP.relativize(p) + ":\n" + r.output());
            assertEquals("", r.output().trim(), TOP.relativize(p) + ":\n" + r.output());
        }
    }

    static boolean isShell(Path p) {
        try {
            String name = p.getFileName().toString();
            if (name.endsWith(".sh")) return true;
            String first = new String(Files.readAllBytes(p), 0, (int) Math.min(Files.size(p), 64), java.nio.charset.StandardCharsets.ISO_8859_1);
            return first.startsWith("#!/bin/sh") || first.startsWith("#!/usr/bin/env bash") || first.startsWith("#!/bin/bash");
        } catch (Exception e) {
            return false;
        }
    }
}
