//! pdsmove build: the C library (src/ minus src/cli), the CLI, and the Criterion suites.
//!   zig build                       -> zig-out/bin/pdsmove
//!   zig build test                  -> unit tests (tests/test_*.c), including CLI tests
//!   zig build integration           -> tests/integration/*.c against the live testbed
//!   zig build -Dsanitize=true test  -> UBSan + valgrind memcheck
//!   zig build test -Donly=cbor,cid  -> only those modules (for working on one module)
const std = @import("std");

const system_libs = [_][]const u8{ "libcurl", "libarchive", "sqlite3", "libcrypto", "libsecp256k1", "jansson" };

const warn_flags = [_][]const u8{
    "-std=c11",      "-D_GNU_SOURCE",  "-Wall",         "-Wextra",        "-Wshadow",
    "-Wformat=2",    "-Wvla",          "-Wstrict-prototypes", "-Werror=implicit-function-declaration",
    "-Wno-unused-parameter",
};

fn lessThan(_: void, a: []const u8, b: []const u8) bool {
    return std.mem.lessThan(u8, a, b);
}

/// All *.c files below `dir` (relative to the build root), sorted, as paths relative to `dir`.
fn listC(b: *std.Build, dir: []const u8, recursive: bool) []const []const u8 {
    var list = std.ArrayList([]const u8).init(b.allocator);
    var d = b.build_root.handle.openDir(dir, .{ .iterate = true }) catch return &.{};
    defer d.close();
    if (recursive) {
        var walker = d.walk(b.allocator) catch @panic("walk");
        defer walker.deinit();
        while (walker.next() catch @panic("walk")) |entry| {
            if (entry.kind == .file and std.mem.endsWith(u8, entry.path, ".c"))
                list.append(b.dupe(entry.path)) catch @panic("oom");
        }
    } else {
        var it = d.iterate();
        while (it.next() catch @panic("iterate")) |entry| {
            if (entry.kind == .file and std.mem.endsWith(u8, entry.name, ".c"))
                list.append(b.dupe(entry.name)) catch @panic("oom");
        }
    }
    std.mem.sort([]const u8, list.items, {}, lessThan);
    return list.items;
}

/// With -Donly, a file belongs to a selected module when its stem is the module name or
/// starts with "<name>_". src/util is always included.
fn selected(only: ?[]const u8, path: []const u8, prefix: []const u8) bool {
    const o = only orelse return true;
    if (std.mem.startsWith(u8, path, "util/") or std.mem.eql(u8, path, "encoding/hash.c")) return true;
    const base = std.fs.path.basename(path);
    const stem0 = base[0 .. base.len - 2];
    if (!std.mem.startsWith(u8, stem0, prefix)) return false;
    const stem = stem0[prefix.len..];
    var it = std.mem.splitScalar(u8, o, ',');
    while (it.next()) |name| {
        if (name.len == 0) continue;
        if (std.mem.eql(u8, stem, name)) return true;
        if (stem.len > name.len and std.mem.startsWith(u8, stem, name) and stem[name.len] == '_') return true;
    }
    return false;
}

fn linkDeps(b: *std.Build, c: *std.Build.Step.Compile, extra: []const []const u8) void {
    c.linkLibC();
    c.addIncludePath(b.path("include"));
    for (system_libs) |l| c.linkSystemLibrary2(l, .{ .use_pkg_config = .force });
    for (extra) |l| c.linkSystemLibrary2(l, .{ .use_pkg_config = .force });
}

pub fn build(b: *std.Build) void {
    const sanitize = b.option(bool, "sanitize", "UBSan for C and run tests under valgrind memcheck") orelse false;
    // valgrind cannot decode every instruction of a -mcpu=native build (AVX-512 in Zig's
    // own memset): sanitizer builds target the baseline x86-64 CPU instead.
    const target = if (sanitize) b.resolveTargetQuery(.{ .cpu_model = .baseline }) else b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const only = b.option([]const u8, "only", "comma-separated module names: build and test only these");

    var flags = std.ArrayList([]const u8).init(b.allocator);
    flags.appendSlice(&warn_flags) catch @panic("oom");
    flags.append(b.fmt("-DPDSMOVE_VERSION=\"{s}\"", .{"0.1.0"})) catch @panic("oom");
    // UBSan comes from Zig's own -fsanitize-c (sanitize_c below; on by default in Debug).
    if (sanitize) flags.append("-fno-omit-frame-pointer") catch @panic("oom");

    // --- library sources: everything under src/ except src/cli ---
    var lib_files = std.ArrayList([]const u8).init(b.allocator);
    for (listC(b, "src", true)) |p| {
        if (std.mem.startsWith(u8, p, "cli/")) continue;
        if (!selected(only, p, "")) continue;
        lib_files.append(p) catch @panic("oom");
    }

    // --- the CLI ---
    const exe = b.addExecutable(.{ .name = "pdsmove", .target = target, .optimize = optimize });
    exe.root_module.sanitize_c = sanitize or optimize == .Debug;
    exe.addCSourceFiles(.{ .root = b.path("src"), .files = lib_files.items, .flags = flags.items });
    var cli_files = std.ArrayList([]const u8).init(b.allocator);
    for (listC(b, "src/cli", false)) |p| cli_files.append(p) catch @panic("oom");
    exe.addCSourceFiles(.{ .root = b.path("src/cli"), .files = cli_files.items, .flags = flags.items });
    linkDeps(b, exe, &.{});
    if (only == null) b.installArtifact(exe);

    const fixtures = b.pathFromRoot("tests/fixtures");
    const test_flags = std.mem.concat(b.allocator, []const u8, &.{
        flags.items,
        &.{ b.fmt("-DPDSMOVE_FIXTURES=\"{s}\"", .{fixtures}), b.fmt("-DPDSMOVE_ROOT=\"{s}\"", .{b.pathFromRoot(".")}) },
    }) catch @panic("oom");

    // --- unit tests (one Criterion binary; tests/test_*.c) ---
    const unit = b.addExecutable(.{ .name = "unit-tests", .target = target, .optimize = optimize });
    unit.root_module.sanitize_c = sanitize or optimize == .Debug;
    unit.addCSourceFiles(.{ .root = b.path("src"), .files = lib_files.items, .flags = flags.items });
    var test_files = std.ArrayList([]const u8).init(b.allocator);
    for (listC(b, "tests", false)) |p| {
        if (!std.mem.startsWith(u8, p, "test_")) continue;
        if (!selected(only, p, "test_")) continue;
        test_files.append(p) catch @panic("oom");
    }
    unit.addCSourceFiles(.{ .root = b.path("tests"), .files = test_files.items, .flags = test_flags });
    unit.addIncludePath(b.path("tests"));
    // zlib: tests/test_age.c inflates the CCTV age vectors (stored zlib-compressed upstream).
    linkDeps(b, unit, &.{ "criterion", "zlib" });

    const test_step = b.step("test", "Run the unit tests (and CLI tests against zig-out/bin/pdsmove)");
    addRun(b, test_step, unit, exe, sanitize, only == null);

    // --- integration tests (tests/integration/*.c; need the testbed, see scripts/test) ---
    const integ = b.addExecutable(.{ .name = "integration-tests", .target = target, .optimize = optimize });
    integ.root_module.sanitize_c = sanitize or optimize == .Debug;
    integ.addCSourceFiles(.{ .root = b.path("src"), .files = lib_files.items, .flags = flags.items });
    integ.addCSourceFiles(.{ .root = b.path("tests/integration"), .files = listC(b, "tests/integration", false), .flags = test_flags });
    integ.addIncludePath(b.path("tests"));
    linkDeps(b, integ, &.{"criterion"});
    const integ_step = b.step("integration", "Run the integration tests against the live testbed (PDSMOVE_TESTBED)");
    addRun(b, integ_step, integ, exe, sanitize, true);
}

fn addRun(b: *std.Build, step: *std.Build.Step, tests: *std.Build.Step.Compile, exe: *std.Build.Step.Compile, sanitize: bool, with_cli: bool) void {
    const run = if (sanitize) blk: {
        const r = b.addSystemCommand(&.{b.pathFromRoot("scripts/valgrind-run")});
        r.addArtifactArg(tests);
        break :blk r;
    } else b.addRunArtifact(tests);
    // Criterion prints its own summary; always show it.
    run.stdio = .inherit;
    run.has_side_effects = true;
    if (b.args) |args| run.addArgs(args);
    if (with_cli) {
        // The sanitizer build's CLI goes to its own directory, so a concurrent normal build
        // cannot swap a -mcpu=native binary (which valgrind cannot run) under its tests.
        const dir: std.Build.InstallDir = if (sanitize) .{ .custom = "sanitize-bin" } else .bin;
        const install = b.addInstallArtifact(exe, .{ .dest_dir = .{ .override = dir } });
        run.step.dependOn(&install.step);
        run.setEnvironmentVariable("PDSMOVE_BIN", b.getInstallPath(dir, "pdsmove"));
    }
    step.dependOn(&run.step);
}
