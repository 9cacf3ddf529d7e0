# The big benchmark closure (see tests/lib/nlstest.py: build_big_closure).
#   nix-build --option sandbox false --no-out-link big.nix --argstr tag big --argstr totalMB 300 \
#     --argstr parts 6 -A env
# `parts` store paths big-part-<i> of about totalMB/parts MiB each (copies of the host's shared
# libraries plus generated files, see src/gen_big.py) and `env`, whose bin/hello is the small
# fixture program (closure.nix, same tag) and whose closure is everything: running
#   ${env}/bin/hello ${env}/part-0/share/small.txt
# needs the hello closure (a few MiB) and one small file, out of the whole closure.
{ tag ? "big", totalMB ? "300", parts ? "6" }:
let
  small = import ./closure.nix { inherit tag; };
  n = builtins.fromJSON parts;
  sizeMB = toString (builtins.fromJSON totalMB / n);
  mkPart = i: derivation {
    name = "big-part-${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-e" "-c" "python3 $gen" ];
    PATH = "/usr/bin:/bin";
    gen = ./src/gen_big.py;
    inherit tag sizeMB;
    part = toString i;
    nparts = parts;
  };
  partList = builtins.genList mkPart n;
  env = derivation {
    name = "big-env";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-e" "-c" ''
      mkdir -p $out/bin
      ln -s $hello/bin/hello $out/bin/hello
      i=0
      for p in $partPaths; do ln -s $p $out/part-$i; i=$((i+1)); done
    '' ];
    PATH = "/usr/bin:/bin";
    inherit tag;
    hello = small.hello;
    partPaths = partList;
  };
in
{ inherit env; hello = small.hello; } // builtins.listToAttrs
  (builtins.genList (i: { name = "part-${toString i}"; value = builtins.elemAt partList i; }) n)
