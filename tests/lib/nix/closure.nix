# The small but real test/demo closure (see tests/lib/nlstest.py: build_closure).
# Built with Debian's nix-bin as root, no daemon:
#   nix-build --option sandbox false --no-out-link closure.nix --argstr tag demo -A hello
# Every derivation uses the host's /bin/sh and tools (PATH=/usr/bin:/bin); nothing is downloaded.
# References are real: Nix finds them by scanning the outputs (ELF interpreter/RPATH, #! lines,
# symlink targets). `tag` is mixed into every derivation so that different tags give disjoint
# store paths (tests that delete or fetch paths do not disturb each other).
#
#   glibc  ld-linux-x86-64.so.2, libc.so.6, libm.so.6, ... copied from Debian (no references)
#   zlib   libz.so.1.2.13 (+ libz.so.1 symlink) from Debian, RPATH patched to glibc -> glibc
#   greet  libgreet.so + greet.h compiled here                                   -> glibc
#   hello  bin/hello, interpreter + RPATH in glibc, zlib, greet                  -> glibc zlib greet
#   dash   Debian's /bin/dash, interpreter + RPATH patched to glibc (bin/sh)     -> glibc
#   data   files, dirs, symlinks (one into hello)                                -> hello
#   tool   bin/nls-tool, a "#!${dash}/bin/sh" script using hello and data       -> dash hello data
#   all    symlinks to everything above (one path whose closure is the whole fixture)
{ tag ? "demo" }:
let
  mk = name: script: attrs: derivation ({
    inherit name tag;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-e" "-c" script ];
    PATH = "/usr/bin:/bin";
  } // attrs);
  ld = "ld-linux-x86-64.so.2";
  rpathFlags = dirs: "-Wl,--disable-new-dtags -Wl,-rpath,${builtins.concatStringsSep ":" dirs}";

  glibc = mk "glibc" ''
    mkdir -p $out/lib
    for f in ${ld} libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libgcc_s.so.1; do
      cp -L /lib/x86_64-linux-gnu/$f $out/lib/$f
    done
    ln -s libm.so.6 $out/lib/libm.so
  '' { };

  zlib = mk "zlib" ''
    mkdir -p $out/lib
    cp -L /lib/x86_64-linux-gnu/libz.so.1 $out/lib/libz.so.1.2.13
    chmod u+w $out/lib/libz.so.1.2.13
    patchelf --set-rpath $glibc/lib $out/lib/libz.so.1.2.13
    ln -s libz.so.1.2.13 $out/lib/libz.so.1
  '' { inherit glibc; };

  greet = mk "greet" ''
    mkdir -p $out/lib $out/include
    cp $header $out/include/greet.h
    cp $src greet.c
    cp $header greet.h
    gcc -O2 -shared -fPIC -o $out/lib/libgreet.so greet.c -lm ${rpathFlags [ "${glibc}/lib" ]}
  '' { inherit glibc; src = ./src/greet.c; header = ./src/greet.h; };

  hello = mk "hello" ''
    mkdir -p $out/bin $out/share/doc/hello
    cp $src hello.c
    gcc -O2 -o $out/bin/hello hello.c -I$greet/include -L$greet/lib -lgreet \
      $zlib/lib/libz.so.1 -lm \
      -Wl,--dynamic-linker=$glibc/lib/${ld} \
      ${rpathFlags [ "${glibc}/lib" "${greet}/lib" "${zlib}/lib" ]}
    ln -s hello $out/bin/hello-link
    echo "hello ($tag): prints a greeting, or size and crc32 of each FILE argument" \
      > $out/share/doc/hello/README
  '' { inherit glibc zlib greet; src = ./src/hello.c; };

  dash = mk "dash" ''
    mkdir -p $out/bin
    cp /bin/dash $out/bin/dash
    chmod u+w $out/bin/dash
    patchelf --set-interpreter $glibc/lib/${ld} --set-rpath $glibc/lib $out/bin/dash
    ln -s dash $out/bin/sh
  '' { inherit glibc; };

  data = mk "data" ''
    python3 $gen
  '' { inherit hello; gen = ./src/gen_data.py; };

  tool = mk "tool" ''
    mkdir -p $out/bin
    cat > $out/bin/nls-tool <<END
    #!$dash/bin/sh
    # nls-tool: reads the data path's config and checksums two of its files with hello.
    while read -r line; do echo "config: \$line"; done < $data/etc/config
    exec $hello/bin/hello $data/share/words.txt $data/share/blob.bin
    END
    chmod 755 $out/bin/nls-tool
  '' { inherit dash hello data; };

  all = mk "all" ''
    mkdir -p $out
    ln -s $glibc $out/glibc
    ln -s $zlib $out/zlib
    ln -s $greet $out/greet
    ln -s $hello $out/hello
    ln -s $dash $out/dash
    ln -s $data $out/data
    ln -s $tool $out/tool
  '' { inherit glibc zlib greet hello dash data tool; };
in
{ inherit glibc zlib greet hello dash data tool all; }
