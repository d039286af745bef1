// Types of ./socket.io.esm.min.js, which web/build.sh copies next to the modules from
// socket.io-client's ESM build (tsconfig.json's rootDirs puts this folder beside
// src/assets, so realtime.js's relative import finds these declarations).
export { io } from "socket.io-client";
export type { ManagerOptions, Socket, SocketOptions } from "socket.io-client";
