{
  description = "kiln: build a Kubernetes cluster as a reproducible, content-addressed build";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
  };

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        # The command-line binary behind `cargo xtask`.
        kiln = pkgs.rustPlatform.buildRustPackage {
          pname = "kiln";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "--package" "kiln-xtask" ];
          doCheck = false;
          meta.mainProgram = "xtask";
        };
        default = self.packages.${pkgs.system}.kiln;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            # The toolchain.
            cargo rustc rustfmt clippy cargo-deny cargo-nextest
            # Independent verifiers the tests run.
            openssl kubectl systemd netplan nginx haproxy
            # Images and virtual machines.
            qemu erofs-utils squashfsTools mmdebstrap diffoscope
          ];
        };
      });
    };
}
