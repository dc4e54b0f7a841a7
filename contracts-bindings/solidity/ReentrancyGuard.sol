// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// One lock per contract for functions that move tokens out.
abstract contract ReentrancyGuard {
    error Reentered();

    uint256 private locked = 1;

    modifier nonReentrant() {
        if (locked != 1) revert Reentered();
        locked = 2;
        _;
        locked = 1;
    }
}
