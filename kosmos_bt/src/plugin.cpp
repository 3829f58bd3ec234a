// Copyright 2026 The kosmos_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

#include "behaviortree_cpp/bt_factory.h"
#include "kosmos_bt/nodes.hpp"

namespace kosmos_bt
{

void registerNodes(BT::BehaviorTreeFactory & factory)
{
  factory.registerNodeType<KosmosAsk>("KosmosAsk");
  factory.registerNodeType<KosmosLocate>("KosmosLocate");
  factory.registerNodeType<KosmosSetQueries>("KosmosSetQueries");
  factory.registerNodeType<KosmosSeen>("KosmosSeen");
}

}  // namespace kosmos_bt

// factory.registerFromPlugin("<prefix>/lib/libkosmos_bt_nodes.so") runs this.
BT_REGISTER_NODES(factory)
{
  kosmos_bt::registerNodes(factory);
}
