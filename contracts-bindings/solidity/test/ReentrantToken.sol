// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestToken} from "../TestToken.sol";

/// Test only: an ERC-20 whose `transfer` calls back into the contract paying
/// out (once), as a malicious token or a token with hooks would, and records
/// whether the nested call got through.
contract ReentrantToken is TestToken {
    address public target;
    bytes public reentryCall;
    bool public reentryAttempted;
    bool public reentrySucceeded;
    bytes public reentryRevert;

    constructor() TestToken("Reentrant", "RE") {}

    function arm(address target_, bytes calldata call) external {
        target = target_;
        reentryCall = call;
    }

    /// Makes the first call itself (as the account being paid).
    function attack() external {
        (bool ok, bytes memory data) = target.call(reentryCall);
        if (!ok) {
            assembly {
                revert(add(data, 32), mload(data))
            }
        }
    }

    function transfer(address to, uint256 amount) public override returns (bool) {
        bool ok = super.transfer(to, amount);
        if (target != address(0) && msg.sender == target && !reentryAttempted) {
            reentryAttempted = true;
            (bool success, bytes memory data) = target.call(reentryCall);
            reentrySucceeded = success;
            reentryRevert = data;
        }
        return ok;
    }
}
